//! Assemble a directory of `.deb`s into a root file system, as drv's
//! builtin builder does: `assemble DEB_DIR OUT [JOBS]`. For trying the
//! builder on real packages and for `bench/toolchain-unpack.sh`.

use std::path::PathBuf;
use std::process::ExitCode;

use drv_debian::rootfs::{assemble, AssembleOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: assemble DEB_DIR OUT [JOBS]");
        return ExitCode::from(2);
    };
    let mut options = AssembleOptions::default();
    if let Some(jobs) = args.get(2) {
        match jobs.parse() {
            Ok(n) => options.jobs = n,
            Err(_) => {
                eprintln!("assemble: JOBS must be a number, not {jobs:?}");
                return ExitCode::from(2);
            }
        }
    }
    let debs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect(),
        Err(e) => {
            eprintln!("assemble: {dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match assemble(&debs, out.as_ref(), &options) {
        Ok(done) => {
            println!(
                "{} packages, {} files ({} bytes), {} directories, {} symlinks, {} ELF files checked",
                done.packages.len(),
                done.files,
                done.bytes,
                done.directories,
                done.symlinks,
                done.elf_files
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("assemble: {e}");
            ExitCode::FAILURE
        }
    }
}
