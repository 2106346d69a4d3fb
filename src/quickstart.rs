//! `snapnest quickstart`: a real backup with no SSH setup. A sample folder, a config using
//! the local source, and storage in `./snapnest-data`; run it twice to see linking at work.

use std::fs;
use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::storage::Storage;

pub fn run(dir: &Path) -> anyhow::Result<i32> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let sample = dir.join("snapnest-sample");
    let data = dir.join("snapnest-data");
    let config_path = dir.join("snapnest-quickstart.toml");

    if !sample.exists() {
        fs::create_dir_all(sample.join("documents/letters")).context("creating sample folder")?;
        fs::create_dir_all(sample.join("photos")).context("creating sample folder")?;
        fs::create_dir_all(sample.join(".cache")).context("creating sample folder")?;
        fs::write(
            sample.join("documents/todo.txt"),
            "buy milk\nback up the laptop\n",
        )?;
        fs::write(
            sample.join("documents/letters/dear-bob.txt"),
            "Dear Bob,\nthe backups work.\n",
        )?;
        fs::write(sample.join("photos/cat.raw"), vec![0x5a; 256 * 1024])?;
        fs::write(
            sample.join(".cache/thumbnails.db"),
            "excluded by the config\n",
        )?;
        fs::write(sample.join("scratch.tmp"), "excluded by the config\n")?;
        std::os::unix::fs::symlink("documents/todo.txt", sample.join("todo-link"))?;
        println!("created sample folder {}", sample.display());
    }
    if !config_path.exists() {
        let text = format!(
            "# snapnest quickstart config: the local folder below, backed up into snapnest-data.\n\
             [storage]\npath = \"{}\"\n\n[defaults]\nexclude = [\"*.tmp\", \".cache/\"]\n\n\
             [[host]]\nname = \"sample\"\nsource = \"local\"\nevery = \"1h\"\nfolders = [\"{}\"]\n\n\
             # `snapnest --config snapnest-quickstart.toml daemon` keeps it backed up every hour.\n\
             [daemon]\nstate_dir = \"{}\"\n",
            toml_escape(&data.to_string_lossy()),
            toml_escape(&sample.to_string_lossy()),
            toml_escape(&dir.join("snapnest-state").to_string_lossy())
        );
        fs::write(&config_path, text)
            .with_context(|| format!("writing {}", config_path.display()))?;
        println!("wrote config {}", config_path.display());
    }
    let config = Config::load(&config_path)?;
    if !config.storage.exists() {
        // The quickstart owns this folder; a real storage folder is never created implicitly.
        fs::create_dir_all(&config.storage)
            .with_context(|| format!("creating {}", config.storage.display()))?;
    }
    crate::cli::init(&config.storage)?;
    let storage = Storage::open(&config.storage)?;
    let mut code = 0;
    for host in &config.hosts {
        let report = crate::cli::backup_with_progress(&storage, host);
        println!("{}", report.summary());
        code = code.max(report.outcome.exit_code());
    }
    crate::cli::list(&storage, None)?;
    println!(
        "\nBrowse the snapshots in {}; run the same command again to see unchanged files linked.\n\
         Next: copy examples/snapnest.toml to /etc/snapnest/snapnest.toml and name your machines.",
        config.storage.display()
    );
    Ok(code)
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
