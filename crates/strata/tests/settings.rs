//! `strata serve` settings: defaults < config file < STRATA_* env < flags,
//! and a config file with an unknown key is refused with a clear error.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:1\"\nlisten_adress = \"typo\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `listen_adress`"), "{err}");
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, format!("listen = \"127.0.0.1:{file_port}\"\n")).unwrap();
    let start = |with_flag: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.args(["serve", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("STRATA_LISTEN", format!("127.0.0.1:{env_port}"))
            .stderr(Stdio::null());
        if with_flag {
            c.args(["--listen", &format!("127.0.0.1:{flag_port}")]);
        }
        c.spawn().unwrap()
    };
    let mut child = start(false);
    let env_won = wait_listening(env_port);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(env_won, "STRATA_LISTEN did not override the config file");

    let mut child = start(true);
    let flag_won = wait_listening(flag_port);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(flag_won, "--listen did not override STRATA_LISTEN");
}
