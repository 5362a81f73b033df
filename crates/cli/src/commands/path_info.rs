//! `drv path-info`: metadata of valid paths, like `nix path-info`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Args;
use drv_formats::StorePath;
use drv_store::LocalStore;
use serde_json::json;

use crate::printer::Printer;
use crate::Cli;

#[derive(Args)]
pub struct PathInfoArgs {
    /// Store paths (`/store/…`, a base name, or a `result` link).
    #[arg(required = true)]
    paths: Vec<String>,
    /// Show every path of the paths' closure too.
    #[arg(short, long)]
    recursive: bool,
    /// Print JSON: NAR hash and size, references, deriver, signatures, registration time.
    #[arg(long)]
    json: bool,
    /// Print the NAR size of each path.
    #[arg(short, long)]
    size: bool,
    /// Print the total NAR size of each path's closure.
    #[arg(short = 'S', long)]
    closure_size: bool,
}

fn closure_size(store: &LocalStore, p: &StorePath) -> anyhow::Result<u64> {
    let mut total = 0;
    for q in store.closure(&BTreeSet::from([p.clone()]))? {
        total += store.require_path_info(&q)?.nar_size;
    }
    Ok(total)
}

pub fn run(cli: &Cli, args: &PathInfoArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let printer = printer.with_json(args.json);
    let store = cli.open_store()?;
    // Everything read is read with collections held off (a short shared
    // lock, no file written): a path found valid stays valid, with its
    // closure, until the answer is printed.
    store.pause_collections()?;
    let mut paths = BTreeSet::new();
    for a in &args.paths {
        let p = store.parse_path_arg(a)?;
        store.require_path_info(&p)?;
        paths.insert(p);
    }
    if args.recursive {
        paths = store.closure(&paths)?;
    }
    if args.json {
        let mut out = Vec::new();
        for p in &paths {
            let info = store.require_path_info(p)?;
            let mut v = json!({
                "path": store.display(p),
                "narHash": info.nar_hash.to_string(),
                "narSize": info.nar_size,
                "references": info.references.iter().map(|r| store.display(r)).collect::<Vec<_>>(),
                "registrationTime": info.registration_time,
                "valid": true,
            });
            if let Some(d) = &info.deriver {
                v["deriver"] = json!(store.display(d));
            }
            if let Some(ca) = info.ca {
                v["ca"] = json!(ca.to_nix_string());
            }
            if !info.signatures.is_empty() {
                v["signatures"] = json!(info.signatures);
            }
            if args.closure_size {
                v["closureSize"] = json!(closure_size(&store, p)?);
            }
            out.push(v);
        }
        printer.json(&serde_json::Value::Array(out))?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = paths.iter().map(|p| store.display(p).len()).max().unwrap_or(0);
    for p in &paths {
        let mut line = format!("{:width$}", store.display(p));
        if args.size {
            line.push_str(&format!("\t{:>12}", store.require_path_info(p)?.nar_size));
        }
        if args.closure_size {
            line.push_str(&format!("\t{:>12}", closure_size(&store, p)?));
        }
        printer.result(line.trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}
