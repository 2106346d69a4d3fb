//! The router packages and the systemd unit, checked as opkg and systemd would see them:
//! packaging/build-ipk.sh runs on the real binary (the host build: the checks are about the
//! container, not the CPU), and the .ipk is taken apart with tar.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_snapnest");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Build a package into `out` and return its path.
fn build_ipk(binary: &Path, target: &str, flavour: &str, out: &Path) -> PathBuf {
    let printed = run(Command::new(repo().join("packaging/build-ipk.sh"))
        .arg(binary)
        .args([target, flavour])
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    PathBuf::from(printed.trim())
}

/// One member of a tar listing: mode string, owner, name.
struct Member {
    mode: String,
    owner: String,
    name: String,
}

fn list(archive: &Path) -> Vec<Member> {
    run(Command::new("tar").args(["-tvzf"]).arg(archive))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Member {
                mode: f[0].to_string(),
                owner: f[1].to_string(),
                name: f[5..].join(" "),
            }
        })
        .collect()
}

fn unpack(archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into));
}

fn control_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with(' ')) {
        let (k, v) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad control line {line:?}"));
        assert!(
            fields.insert(k.to_string(), v.trim().to_string()).is_none(),
            "{k} twice"
        );
    }
    fields
}

fn sh_n(script: &Path) {
    let out = Command::new("sh").arg("-n").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "sh -n {}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a package must hold, per flavour.
struct Expect {
    target: &'static str,
    flavour: &'static str,
    arch: &'static str,
    binary: &'static str,
    init: &'static str,
    config: &'static str,
}

fn check_package(x: &Expect) {
    let tmp = tempfile::tempdir().unwrap();
    let ipk = build_ipk(Path::new(BIN), x.target, x.flavour, &tmp.path().join("out"));
    assert_eq!(
        ipk.file_name().unwrap().to_str().unwrap(),
        format!("snapnest_{VERSION}-1_{}.ipk", x.arch)
    );

    // Outer container: gzip'd tar, exactly these three members in this order, root-owned.
    let magic = fs::read(&ipk).unwrap();
    assert_eq!(&magic[..2], &[0x1f, 0x8b], "an .ipk is gzip'd");
    let outer = list(&ipk);
    let names: Vec<&str> = outer.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    );
    for m in &outer {
        assert_eq!(m.owner, "0/0", "{}", m.name);
        assert_eq!(m.mode, "-rw-r--r--", "{}", m.name);
    }
    let top = tmp.path().join("ipk");
    unpack(&ipk, &top);
    assert_eq!(
        fs::read_to_string(top.join("debian-binary")).unwrap(),
        "2.0\n"
    );

    // control.tar.gz: control fields, conffiles, maintainer scripts.
    let ctrl = tmp.path().join("control");
    unpack(&top.join("control.tar.gz"), &ctrl);
    let control = fs::read_to_string(ctrl.join("control")).unwrap();
    let fields = control_fields(&control);
    assert_eq!(fields["Package"], "snapnest");
    assert_eq!(fields["Version"], format!("{VERSION}-1"));
    assert_eq!(fields["Architecture"], x.arch);
    assert_eq!(fields["SourceDateEpoch"], "1700000000");
    assert!(!fields["Description"].is_empty());
    assert!(
        !fields.contains_key("Depends"),
        "a static binary depends on nothing"
    );
    let ctrl_modes: BTreeMap<String, String> = list(&top.join("control.tar.gz"))
        .into_iter()
        .filter(|m| m.name != "./")
        .map(|m| {
            assert_eq!(m.owner, "0/0", "{}", m.name);
            (m.name, m.mode)
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("./conffiles", "-rw-r--r--"),
        ("./control", "-rw-r--r--"),
        ("./postinst", "-rwxr-xr-x"),
        ("./prerm", "-rwxr-xr-x"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(ctrl_modes, want);
    assert_eq!(
        fs::read_to_string(ctrl.join("conffiles")).unwrap(),
        format!("{}\n", x.config)
    );

    // data.tar.gz: the files, their modes and owner, and nothing else.
    let data = tmp.path().join("data");
    unpack(&top.join("data.tar.gz"), &data);
    let files: BTreeMap<String, String> = list(&top.join("data.tar.gz"))
        .into_iter()
        .filter(|m| !m.mode.starts_with('d'))
        .map(|m| {
            assert_eq!(m.owner, "0/0", "{}", m.name);
            (m.name, m.mode)
        })
        .collect();
    let want: BTreeMap<String, String> = [
        (x.binary, "-rwxr-xr-x"),
        (x.init, "-rwxr-xr-x"),
        (x.config, "-rw-------"),
    ]
    .into_iter()
    .map(|(p, mode)| (format!(".{p}"), mode.to_string()))
    .collect();
    assert_eq!(files, want);
    let at = |p: &str| data.join(p.trim_start_matches('/'));
    assert_eq!(
        fs::read(at(x.binary)).unwrap(),
        fs::read(BIN).unwrap(),
        "the packaged binary is the one given"
    );
    let installed: u64 = [x.binary, x.init, x.config]
        .iter()
        .map(|p| fs::metadata(at(p)).unwrap().len())
        .sum();
    assert_eq!(fields["Installed-Size"], installed.to_string());

    // Every script parses; the init script runs the daemon on the packaged config.
    for script in [ctrl.join("postinst"), ctrl.join("prerm"), at(x.init)] {
        sh_n(&script);
    }
    let init = fs::read_to_string(at(x.init)).unwrap();
    assert!(
        init.contains(&format!("--config {} daemon", x.config))
            || init.contains("--config \"$CONFIG\" daemon")
                && init.contains(&format!("CONFIG={}", x.config)),
        "{init}"
    );
    // The packaged config is valid: the binary reads it (status works without a disk).
    let out = Command::new(BIN)
        .arg("--config")
        .arg(at(x.config))
        .arg("status")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "packaged config rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openwrt_ipk_is_a_procd_package_with_the_config_as_conffile() {
    check_package(&Expect {
        target: "mipsel-unknown-linux-musl",
        flavour: "openwrt",
        arch: "mipsel_24kc",
        binary: "/usr/bin/snapnest",
        init: "/etc/init.d/snapnest",
        config: "/etc/snapnest/snapnest.toml",
    });
    let init = fs::read_to_string(repo().join("packaging/openwrt/snapnest.init")).unwrap();
    assert!(init.starts_with("#!/bin/sh /etc/rc.common\n"));
    for line in [
        "USE_PROCD=1",
        "procd_set_param respawn",
        "procd_open_instance",
    ] {
        assert!(init.contains(line), "procd init script lacks {line}");
    }
    let postinst = fs::read_to_string(repo().join("packaging/openwrt/postinst")).unwrap();
    assert!(postinst.contains("/etc/init.d/snapnest enable"));
    let prerm = fs::read_to_string(repo().join("packaging/openwrt/prerm")).unwrap();
    assert!(prerm.contains("/etc/init.d/snapnest stop"));
}

#[test]
fn entware_ipk_lives_under_opt_with_an_rc_func_script() {
    check_package(&Expect {
        target: "aarch64-unknown-linux-musl",
        flavour: "entware",
        arch: "aarch64-k3.10",
        binary: "/opt/bin/snapnest",
        init: "/opt/etc/init.d/S90snapnest",
        config: "/opt/etc/snapnest/snapnest.toml",
    });
    let init = fs::read_to_string(repo().join("packaging/entware/S90snapnest")).unwrap();
    assert!(init.contains(". /opt/etc/init.d/rc.func"));
    assert!(init.contains("ENABLED=yes"));
}

#[test]
fn every_architecture_gets_its_opkg_name() {
    let tmp = tempfile::tempdir().unwrap();
    // Names only: any file will do as the binary.
    let binary = tmp.path().join("snapnest");
    fs::write(&binary, b"\x7fELF").unwrap();
    for (target, openwrt, entware) in [
        ("mipsel-unknown-linux-musl", "mipsel_24kc", "mipselsf-k3.4"),
        ("mips-unknown-linux-musl", "mips_24kc", "mipssf-k3.4"),
        (
            "armv7-unknown-linux-musleabihf",
            "arm_cortex-a7_neon-vfpv4",
            "armv7sf-k3.2",
        ),
        (
            "aarch64-unknown-linux-musl",
            "aarch64_cortex-a53",
            "aarch64-k3.10",
        ),
        ("x86_64-unknown-linux-musl", "x86_64", "x64-k3.2"),
    ] {
        for (flavour, arch) in [("openwrt", openwrt), ("entware", entware)] {
            let ipk = build_ipk(&binary, target, flavour, tmp.path());
            let name = ipk.file_name().unwrap().to_str().unwrap().to_string();
            assert_eq!(
                name,
                format!("snapnest_{VERSION}-1_{arch}.ipk"),
                "{target} {flavour}"
            );
        }
    }
    // An unknown target is refused, not packaged under a wrong name.
    let out = Command::new(repo().join("packaging/build-ipk.sh"))
        .arg(&binary)
        .args(["riscv64gc-unknown-linux-musl", "openwrt"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no opkg architecture"));
}

/// `systemd-analyze verify` on a copy of the unit whose ExecStart is the built binary (it
/// checks that the program exists). It reports problems on stderr, exit code 0 or not.
fn verify_unit(text: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let unit = tmp.path().join("snapnest.service");
    fs::write(&unit, text.replace("/usr/local/bin/snapnest", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        if out.status.success() {
            ""
        } else {
            "(exit code not 0)"
        }
    )
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let text = fs::read_to_string(repo().join("systemd/snapnest.service")).unwrap();
    assert_eq!(verify_unit(&text), "", "systemd-analyze verify complained");
    // The check itself can fail: a wrong value is reported.
    let broken = text.replace("Restart=on-failure", "Restart=sometimes");
    assert!(verify_unit(&broken).contains("sometimes"));

    let settings: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for line in [
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/srv/snapnest",
        "StateDirectory=snapnest",
        "CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE",
        "ExecStart=/usr/local/bin/snapnest --config /etc/snapnest/snapnest.toml daemon",
    ] {
        assert!(settings.contains(&line), "unit lacks {line}");
    }
    // Snapshots keep setuid bits; this would make storing them fail.
    assert!(!settings.iter().any(|l| l.starts_with("RestrictSUIDSGID")));
}
