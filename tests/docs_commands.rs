//! The commands the README and docs/ show run as shown. A shell block is marked runnable by
//! an HTML comment starting `<!-- runnable` on the line before its ```` ```sh ```` fence (not
//! rendered). Each marked block runs in bash (`set -e`, `pipefail`) against one started Pulse
//! on the simulated fleet, in a temporary directory, with the built `pulse` first on `PATH`;
//! `localhost:5000` becomes that Pulse's address, and every `curl` must get a 2xx answer
//! (`--fail-with-body`). Blocks that need Docker, a GPU, Kafka, a long history or ids from an
//! earlier answer are not marked.

mod common;

use common::process::Pulse;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MARKER: &str = "<!-- runnable";

struct Block {
    place: String,
    text: String,
}

/// The marked blocks of one Markdown file; a marker not followed by a `sh` fence fails.
fn runnable_blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.trim_start().starts_with(MARKER) {
            continue;
        }
        let place = format!("{}:{}", path.display(), i + 1);
        assert_eq!(
            lines.get(i + 1).map(|l| l.trim()),
            Some("```sh"),
            "{place}: a runnable marker must precede a ```sh fence"
        );
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| l.trim() != "```")
            .copied()
            .collect();
        assert!(
            i + 2 + body.len() < lines.len(),
            "{place}: the block is not closed"
        );
        blocks.push(Block {
            place,
            text: body.join("\n"),
        });
    }
    blocks
}

fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    std::iter::once(root.join("README.md"))
        .chain(docs)
        .collect()
}

#[test]
fn every_runnable_block_in_the_docs_runs_as_shown() {
    let blocks: Vec<Block> = doc_files()
        .iter()
        .flat_map(|p| runnable_blocks(p))
        .collect();
    let in_readme = blocks
        .iter()
        .filter(|b| b.place.contains("README.md"))
        .count();
    assert!(
        in_readme >= 3,
        "the README's quick start lost its runnable blocks ({in_readme})"
    );

    let pulse = Pulse::start(&[]);
    let address = pulse.base.trim_start_matches("http://").to_string();
    // A reader runs these once Pulse has sampled; so does the test.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pulse
        .get_text("/metrics")
        .contains("\nDCGM_FI_DEV_GPU_UTIL{")
    {
        assert!(
            Instant::now() < deadline,
            "no GPU sample in /metrics after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_pulse")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for block in &blocks {
        let script = format!(
            "curl() {{ command curl --fail-with-body --max-time 30 \"$@\"; }}\n{}",
            block
                .text
                .replace("localhost:5000", &address)
                .replace("127.0.0.1:5000", &address)
        );
        let out = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{} ({}):\n{}\nstdout: {}\nstderr: {}",
                block.place,
                out.status,
                block.text,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    pulse.stop();
    eprintln!("{} runnable blocks run", blocks.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
