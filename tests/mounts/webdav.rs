//! A WebDAV share for tests: Apache's mod_dav on 127.0.0.1 serving a temp folder, mounted
//! through davfs2. Unmounted (davfs2 uploads what it still holds first) and the server
//! stopped when dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct WebDav {
    pub dir: tempfile::TempDir,
    /// What the server serves: the files as they reached the server.
    pub served: PathBuf,
    pub mnt: PathBuf,
    pub url: String,
    conf: PathBuf,
    pid_file: PathBuf,
}

/// Why davfs2 or the server cannot run here, if they cannot.
pub fn missing_facility() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse: this machine cannot mount FUSE filesystems".into());
    }
    None
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (CI installs it in .ci/run)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl WebDav {
    pub fn start() -> WebDav {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        let served = d.join("served");
        let mnt = d.join("mnt");
        for p in [
            &served,
            &mnt,
            &d.join("lock"),
            &d.join("run"),
            &d.join("cache"),
        ] {
            fs::create_dir(p).unwrap();
        }
        // Apache serves as www-data; davfs2 keeps its cache as davfs2.
        run("chown", &["www-data:www-data", served.to_str().unwrap()]);
        run(
            "chown",
            &["www-data:www-data", d.join("lock").to_str().unwrap()],
        );
        run(
            "chown",
            &["davfs2:davfs2", d.join("cache").to_str().unwrap()],
        );
        fs::set_permissions(d.join("cache"), fs::Permissions::from_mode(0o777)).unwrap();
        let port = crate::common::free_port();
        let pid_file = d.join("run/httpd.pid");
        let m = "/usr/lib/apache2/modules";
        fs::write(
            d.join("httpd.conf"),
            format!(
                "ServerRoot \"{d}\"\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\nPidFile {pid}\n\
                 LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
                 LoadModule authz_core_module {m}/mod_authz_core.so\n\
                 LoadModule dav_module {m}/mod_dav.so\nLoadModule dav_fs_module {m}/mod_dav_fs.so\n\
                 User www-data\nGroup www-data\nErrorLog {d}/run/error.log\n\
                 DavLockDB {d}/lock/DavLock\nLimitRequestBody 0\nDocumentRoot {served}\n\
                 <Directory {served}>\n  Dav On\n  Require all granted\n</Directory>\n",
                d = d.display(),
                pid = pid_file.display(),
                served = served.display(),
            ),
        )
        .unwrap();
        run(
            "/usr/sbin/apache2",
            &["-f", d.join("httpd.conf").to_str().unwrap(), "-k", "start"],
        );
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "apache did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // cache_size 16384 (MiB): davfs2 keeps whole files in its cache, and the big-file
        // test reads back 6 GiB; the default 50 MiB would evict and fetch them again.
        // buf_size 64: davfs2 1.6's readdir fails with EINVAL on kernels from 6.16 on with
        // its default buffer (davfs2 issue #22); the larger buffer is the known workaround.
        let secrets = d.join("secrets");
        fs::write(&secrets, format!("{url} test test\n")).unwrap();
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
        let conf = d.join("davfs2.conf");
        fs::write(
            &conf,
            format!(
                "secrets {}\ncache_dir {}\nbuf_size 64\nuse_locks 1\ncache_size 16384\n",
                secrets.display(),
                d.join("cache").display()
            ),
        )
        .unwrap();
        let w = WebDav {
            dir,
            served,
            mnt,
            url,
            conf,
            pid_file,
        };
        w.mount();
        w
    }

    /// Mount davfs2 on `mnt`. mount.davfs runs as user davfs2 and opens /dev/null for
    /// writing; where /dev/null is not writable by others (some containers make it 0644),
    /// it dies at once, so it is started in a mount namespace of its own with a working
    /// /dev/null, its mount made visible here through a shared bind mount.
    pub fn mount(&self) {
        let null_ok = fs::metadata("/dev/null")
            .map(|m| m.permissions().mode() & 0o002 != 0)
            .unwrap_or(false);
        let (conf, url, mnt) = (
            self.conf.to_str().unwrap(),
            self.url.as_str(),
            self.mnt.to_str().unwrap(),
        );
        if null_ok {
            run(
                "mount",
                &["-t", "davfs", "-o", &format!("conf={conf}"), url, mnt],
            );
        } else {
            eprintln!("/dev/null is not writable by others here: mount.davfs gets its own");
            let d = self.dir.path();
            let null = d.join("null");
            if !null.exists() {
                run("mknod", &[null.to_str().unwrap(), "c", "1", "3"]);
                fs::set_permissions(&null, fs::Permissions::from_mode(0o666)).unwrap();
                run("mount", &["--bind", mnt, mnt]);
                run("mount", &["--make-shared", mnt]);
            }
            let script = format!(
                "mount --make-rprivate /dev && mount --bind {} /dev/null && exec mount -t davfs -o conf={conf} {url} {mnt}",
                null.display()
            );
            run(
                "unshare",
                &["-m", "--propagation", "unchanged", "sh", "-c", &script],
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while fs::read_dir(&self.mnt).is_err() {
            assert!(Instant::now() < deadline, "davfs2 mount did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Empty davfs2's local cache (while unmounted): what is read next comes from the server.
    pub fn forget_cache(&self) {
        let cache = self.dir.path().join("cache");
        for e in fs::read_dir(&cache).unwrap() {
            let p = e.unwrap().path();
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }

    /// Unmount davfs2; umount.davfs waits until every file is uploaded.
    pub fn unmount(&self) {
        let mnt = self.mnt.to_str().unwrap();
        let mounted = |_: ()| {
            fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(mnt) && l.contains(" - fuse "))
        };
        if mounted(()) {
            let _ = Command::new("umount").arg(mnt).output();
            // Minutes, not seconds: the big-file test leaves GiBs to upload.
            let deadline = Instant::now() + Duration::from_secs(900);
            while mounted(()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // davfs2's daemon ends after the unmount; wait so its upload is finished.
        let pid = Path::new("/var/run/mount.davfs").join(format!(
            "{}.pid",
            mnt.trim_start_matches('/').replace('/', "-")
        ));
        let deadline = Instant::now() + Duration::from_secs(900);
        while pid.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for WebDav {
    fn drop(&mut self) {
        self.unmount();
        let mnt = self.mnt.to_str().unwrap();
        // The shared bind mount, where one was made.
        let _ = Command::new("umount").arg(mnt).output();
        if let Ok(pid) = fs::read_to_string(&self.pid_file) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe_kill(pid);
            }
        }
    }
}

fn unsafe_kill(pid: i32) {
    let _ = Command::new("kill").arg(pid.to_string()).output();
}
