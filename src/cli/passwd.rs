//! `snapnest passwd`: hash a password for the web page's `[web] password_hash`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;

use crate::web::auth::{PasswordHash, DEFAULT_ITERATIONS};

/// Echo off while a person types; restored on drop.
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    fn new() -> NoEcho {
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho(None);
            }
            let old = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            NoEcho(Some(old))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &old) };
        }
    }
}

fn read_line(prompt: &str, tty: bool) -> anyhow::Result<String> {
    if tty {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if tty {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn passwd() -> anyhow::Result<i32> {
    let tty = std::io::stdin().is_terminal();
    let pw = {
        let _quiet = tty.then(NoEcho::new);
        let pw = read_line("web password: ", tty)?;
        if tty && read_line("again: ", tty)? != pw {
            bail!("the two passwords differ; nothing printed");
        }
        pw
    };
    if pw.chars().count() < 8 {
        bail!("use at least 8 characters");
    }
    let hash = PasswordHash::new(&pw, DEFAULT_ITERATIONS);
    println!("password_hash = \"{hash}\"");
    if tty {
        eprintln!(
            "Put this line into the [web] table of the config, then reload the daemon (SIGHUP)."
        );
    }
    Ok(0)
}
