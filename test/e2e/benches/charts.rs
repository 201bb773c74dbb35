//! Re-renders the charts (`<out>/*.svg`, default docs/benchmarks) from the
//! JSON results the benchmarks wrote there, without measuring anything:
//! for a change to the renderer.
//!
//! `cargo bench -p lazarus-e2e --bench charts -- [--out DIR]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: the renderer needs only its paths
#[path = "../support/mod.rs"]
mod support;

use common::report::Report;
use std::fs;

fn main() {
    let opts = common::Opts::parse(1);
    let mut files: Vec<_> = fs::read_dir(&opts.out)
        .unwrap_or_else(|e| panic!("{}: {e}", opts.out.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let report: Report =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for svg in common::chart::render_all(&report, &opts.out) {
            println!("{}", svg.display());
        }
    }
}
