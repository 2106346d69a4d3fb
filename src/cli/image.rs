//! `init` with strategy = "image", `snapnest image grow`, and mounting the image for the
//! commands that read or write the storage.

use crate::config::Config;
use crate::dest::image::{self, Attachment, ImageSpec};
use crate::dest::probe;
use crate::strategy::{self, Strategy, Wanted};

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Make the image file larger and its ext4 with it (to image_size, or SIZE).
    Grow {
        /// New size, e.g. "300G"; default: the config's image_size.
        size: Option<String>,
    },
    /// Mount the image on its mount point and leave it mounted (to look inside).
    Mount,
    /// Unmount the image.
    Unmount,
}

/// Mount the image for the rest of this command, where the config has one.
pub fn attach(config: &Config) -> anyhow::Result<Option<Attachment>> {
    Ok(match &config.image {
        Some(spec) => Some(image::attach(spec)?),
        None => None,
    })
}

pub fn command(config: &Config, cmd: &ImageCommand) -> anyhow::Result<i32> {
    let Some(spec) = &config.image else {
        anyhow::bail!(
            "{} has no image: set [storage] strategy = \"image\" and image_size",
            config.file.display()
        );
    };
    match cmd {
        ImageCommand::Grow { size } => {
            let size = match size {
                Some(s) => {
                    s.parse::<bytesize::ByteSize>()
                        .map_err(|e| anyhow::anyhow!("{s:?}: {e} (write e.g. \"300G\")"))?
                        .0
                }
                None => spec.size,
            };
            println!("{}", image::grow(spec, size)?);
        }
        ImageCommand::Mount => {
            image::attach(spec)?.keep();
            println!("{}", spec.describe());
        }
        ImageCommand::Unmount => {
            image::unmount(&spec.mount_point)?;
            println!("unmounted {}", spec.mount_point.display());
        }
    }
    Ok(0)
}

/// `init` with an image: probe the share, refuse with the reason where an image cannot
/// work, make the image (kept if it is there), mount it, and init the storage inside.
pub fn init(spec: &ImageSpec) -> anyhow::Result<i32> {
    if !spec.share.is_dir() {
        // Storage::init explains what an absent folder means (an unmounted disk).
        crate::storage::Storage::init(&spec.share)?;
    }
    let share = probe::probe(&spec.share)?;
    super::probe::print_findings(&share);
    let why = match spec.file().exists() {
        true => format!("the image {} is there already: kept", spec.file().display()),
        false => image::fits(&share, spec.size).map_err(|why| {
            anyhow::anyhow!(
                "strategy \"image\" cannot work on {} ({}): {why}",
                spec.share.display(),
                share.filesystem
            )
        })?,
    };
    if image::create(spec)? {
        println!("made {}", spec.describe());
    }
    let attached = image::attach(spec)?;
    let inside = probe::probe(&spec.mount_point)?;
    let mut choice = strategy::choose(&inside, &Wanted::Named(Strategy::Image))?;
    choice.reasons.insert(0, why);
    super::probe::print_choice(&choice);
    let code = super::probe::init_recorded(&spec.mount_point, &inside, &choice)?;
    drop(attached);
    Ok(code)
}

/// What `probe DIR` says about an image on DIR.
pub fn probe_line(f: &probe::Findings, size: u64) -> Result<String, String> {
    image::fits(f, size)
}
