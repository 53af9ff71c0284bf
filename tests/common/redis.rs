//! A real `redis-server` (Debian package `redis-server`) on a loopback port, in a
//! temporary directory, for the tests that need one.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        let server = RedisServer { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while connection(port).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl RedisServer {
    /// SIGSTOP (`true`) or SIGCONT: a hung server, which neither answers nor refuses.
    pub fn pause(&self, stopped: bool) {
        let signal = if stopped { "-STOP" } else { "-CONT" };
        std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn connection(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection()
}
