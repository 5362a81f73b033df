//! The sandbox alone, many times: what one trivial build costs in
//! `drv_sandbox::run`, without the store around it (no database, no log
//! compression), for bench/many-small.sh's breakdown and for profiling.
//!
//!   cargo run --release -p drv-sandbox --example many_builds -- TOOLCHAIN [BUILDS] [JOBS] [BALLAST_MIB]
//!
//! TOOLCHAIN is a toolchain tree with `/bin/sh` (e.g. a store's
//! `…-bookworm-toolchain`); BUILDS (200) builds of `echo i > $out` run on
//! JOBS (2) threads, each with its own scratch and build directories under a
//! temporary directory beside nothing of the host's. BALLAST_MIB (0) MiB
//! of heap are written first, so the process is as large as drv's is when
//! it builds. Prints the wall time a build, the CPU time of this process
//! and its children a build, and the slowest build.
//!
//! To see what a part costs, leave it out: `DRV_BENCH_NETWORK=1` shares
//! the host's network namespace (as a fixed-output build does),
//! `DRV_BENCH_NO_CGROUP=1` limits with rlimits only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use drv_sandbox::SandboxSpec;

fn usage() -> ! {
    eprintln!("usage: many_builds TOOLCHAIN [BUILDS] [JOBS] [BALLAST_MIB]");
    std::process::exit(2)
}

fn cpu_seconds() -> f64 {
    let usage = |who| nix::sys::resource::getrusage(who).map(|u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    });
    use nix::sys::resource::UsageWho;
    usage(UsageWho::RUSAGE_SELF).unwrap_or(0.0) + usage(UsageWho::RUSAGE_CHILDREN).unwrap_or(0.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let toolchain = PathBuf::from(args.next().unwrap_or_else(|| usage()));
    let number = |default: usize, arg: Option<String>| arg.map_or(Some(default), |a| a.parse().ok()).unwrap_or_else(|| usage());
    let builds = number(200, args.next());
    let jobs = number(2, args.next()).max(1);
    let ballast_mib = number(0, args.next());
    let network = std::env::var_os("DRV_BENCH_NETWORK").is_some();
    let use_cgroups = std::env::var_os("DRV_BENCH_NO_CGROUP").is_none();

    // Touched, so that its pages are mapped as drv's heap is.
    let ballast: Vec<u8> = vec![1; ballast_mib << 20];
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let next = AtomicUsize::new(0);
    let slowest = std::sync::Mutex::new(Duration::ZERO);
    let (cpu, started) = (cpu_seconds(), Instant::now());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= builds {
                    break;
                }
                let dir = work.path().join(i.to_string());
                let (scratch, build) = (dir.join("scratch"), dir.join("build"));
                for d in [&scratch, &build] {
                    std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
                }
                let out = format!("/store/{i:032}-out");
                let mut spec = SandboxSpec::new("/bin/sh", "/store", &scratch, &build);
                // As drv gives it: a store path among the inputs.
                spec.toolchain = Some(toolchain.clone());
                spec.inputs = vec![drv_sandbox::Input {
                    physical: toolchain.clone(),
                    logical: "/store/00000000000000000000000000000000-toolchain".into(),
                }];
                spec.args = vec!["-c".into(), format!("echo {i} > $out").into()];
                spec.env = vec![("out".into(), out.clone().into())];
                spec.outputs = vec![out.into()];
                spec.network = network;
                spec.limits.use_cgroups = use_cgroups;
                let log = std::fs::File::create(dir.join("log")).unwrap_or_else(|e| panic!("log: {e}"));
                let one = Instant::now();
                match drv_sandbox::run(&spec, log.into()) {
                    Ok(status) if status.success() => {}
                    other => panic!("build {i}: {other:?}"),
                }
                let took = one.elapsed();
                let mut worst = slowest.lock().unwrap_or_else(|p| p.into_inner());
                *worst = (*worst).max(took);
            });
        }
    });
    let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let worst = slowest.into_inner().unwrap_or_else(|p| p.into_inner());
    println!(
        "{builds} builds on {jobs} threads ({} MiB ballast): {:.2} ms wall a build, {:.2} ms CPU a build, slowest {:.1} ms",
        ballast.len() >> 20,
        wall / builds as f64 * 1e3,
        cpu / builds as f64 * 1e3,
        worst.as_secs_f64() * 1e3
    );
}
