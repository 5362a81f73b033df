//! NAR dump+hash throughput on a synthetic tree shaped like a Python
//! installation (many small files, a few large ones). The side-by-side
//! comparison with Nix is `bench/nar-hash.sh`.

use std::fs;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use drv_formats::nar;

fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    for d in 0..40 {
        let dir = root.join(format!("pkg{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let size = 200 + (d * 131 + f * 977) % 16_000;
            fs::write(dir.join(format!("mod{f}.py")), vec![b'a' + (f % 26) as u8; size]).unwrap();
            total += size as u64;
        }
    }
    fs::write(root.join("libbig.so"), vec![7u8; 32 << 20]).unwrap();
    total + (32 << 20)
}

fn bench(c: &mut Criterion) {
    let t = tempfile::tempdir().unwrap();
    let bytes = make_tree(t.path());
    let mut g = c.benchmark_group("nar");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(20);
    g.bench_function("hash_path", |b| b.iter(|| nar::hash_path(t.path()).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
