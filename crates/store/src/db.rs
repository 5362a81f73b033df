//! The metadata database: which store paths are valid, their NAR hashes,
//! references and derivers. Same tables as Nix's `db.sqlite` (2.8), so the
//! data can be read by tools that know Nix's; versioned with
//! `PRAGMA user_version` and migrated forward on open.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use drv_formats::{ContentAddress, Sha256, StoreDir, StorePath};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::lock::FileLock;
use crate::error::StoreError;

/// Schema of version 1: Nix 2.8's tables.
const SCHEMA_V1: &str = r#"
CREATE TABLE ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);
CREATE TABLE Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);
CREATE INDEX IndexReferrer on Refs(referrer);
CREATE INDEX IndexReference on Refs(reference);
CREATE TRIGGER DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;
CREATE TABLE DerivationOutputs (
    drv  integer not null,
    id   text not null,
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);
CREATE INDEX IndexDerivationOutputs on DerivationOutputs(path);
"#;

/// Migrations in order; entry `i` takes the schema from version `i` to `i+1`.
const MIGRATIONS: &[&str] = &[SCHEMA_V1];

/// The version this build of drv reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The lock file, beside the database, that orders changes of the
/// database's state (creation, WAL, schema) against opens.
const SCHEMA_LOCK: &str = "schema.lock";

fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)
}

/// Record `outputs` as the output paths of the valid derivation `drv`.
fn insert_derivation_outputs(
    tx: &rusqlite::Transaction,
    store_dir: &StoreDir,
    drv: &StorePath,
    outputs: &BTreeMap<String, StorePath>,
) -> Result<(), StoreError> {
    let id: i64 = tx
        .query_row("SELECT id FROM ValidPaths WHERE path = ?1", [store_dir.display(drv)], |r| r.get(0))
        .map_err(db_err)?;
    let mut insert =
        tx.prepare_cached("INSERT OR REPLACE INTO DerivationOutputs (drv, id, path) VALUES (?1, ?2, ?3)").map_err(db_err)?;
    for (name, path) in outputs {
        insert.execute(params![id, name, store_dir.display(path)]).map_err(db_err)?;
    }
    Ok(())
}

/// Everything the store knows about one valid path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: Sha256,
    pub nar_size: u64,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    /// Seconds since the Unix epoch.
    pub registration_time: i64,
    pub ca: Option<ContentAddress>,
    /// `key-name:base64` signatures.
    pub signatures: Vec<String>,
}

/// The whole store as the collector sees it: nodes indexed densely, edges
/// as indices.
#[derive(Default)]
pub(crate) struct GcGraph {
    pub nodes: Vec<GcNode>,
}

pub(crate) struct GcNode {
    /// `ValidPaths.id`.
    pub id: i64,
    /// The logical path as the database has it (`/store/<hash>-<name>`),
    /// not parsed: parsing 20,000 paths costs a collection milliseconds,
    /// and the registration checked it.
    pub path: String,
    pub registration_time: i64,
    pub nar_size: u64,
    /// The deriver, if it is valid.
    pub deriver: Option<usize>,
    pub references: Vec<usize>,
    /// For a derivation: its outputs that are valid.
    pub outputs: Vec<usize>,
}

/// Keep the WAL and its index when the last connection closes: every drv
/// invocation would otherwise delete and recreate (and re-initialise) them,
/// which is most of the cost of a command that only reads.
fn persist_wal(conn: &Connection) {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: the handle is open for the lifetime of `conn`; the file
    // control takes a pointer to an int, which outlives the call.
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::os::raw::c_int).cast(),
        );
    }
}

pub(crate) struct Db {
    conn: Connection,
    store_dir: StoreDir,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// How long a connection waits for another to release the write lock:
/// about ten minutes, as before (a `drv gc` of a large store holds it a
/// while).
const BUSY_WAIT_LIMIT: Duration = Duration::from_secs(600);

/// SQLite's busy handler, waiting for the write lock. SQLite's own sleeps
/// 1, 2, 5, 10, … ms per attempt; the lock is mostly held for well under a
/// millisecond by another thread of this process (a finished build's
/// registration while the next build starts), so most of such a sleep is
/// idle: in a cold build of 200 trivial derivations, half of the builds
/// waited about 4 ms each. This one sleeps 20 µs, doubling up to 10 ms.
fn wait_while_busy(attempt: i32) -> bool {
    let attempt = attempt.max(0) as u32;
    let wait = Duration::from_micros(20u64 << attempt.min(9)).min(Duration::from_millis(10));
    std::thread::sleep(wait);
    // Past the doubling, each attempt waits 10 ms.
    attempt < 10 + (BUSY_WAIT_LIMIT.as_millis() / 10) as u32
}

impl Db {
    /// Open the database `file`, creating it and its schema, or migrating
    /// it, if needed.
    ///
    /// Safe under concurrent first opens (eight `drv build`s on a store
    /// that does not exist yet): whatever changes the file's state (switch
    /// to WAL, schema, migrations) happens under an exclusive lock on
    /// `schema.lock` beside it, and an open checks for an up-to-date schema
    /// under the shared lock, so no open ever meets a database half way
    /// through its conversion to WAL, which SQLite reports as "database is
    /// locked" without calling the busy handler (sqlite.org/wal.html,
    /// "Activating And Configuring WAL Mode"; pager.c refuses the journal
    /// mode change while another connection reads).
    pub(crate) fn open(file: &Path, store_dir: StoreDir) -> Result<Self, StoreError> {
        let lock_file = file.with_file_name(SCHEMA_LOCK);
        let open = || -> Result<Connection, StoreError> {
            let conn =
                Connection::open(file).map_err(|e| StoreError::Database(format!("{}: {e}", file.display())))?;
            conn.busy_handler(Some(wait_while_busy)).map_err(db_err)?;
            Ok(conn)
        };
        {
            let _shared = FileLock::shared(&lock_file)?;
            let conn = open()?;
            // The common case, an up-to-date schema, is only a read: no
            // write transaction (and no fsync) for every drv invocation.
            // Such a database is in WAL mode already (set before the
            // schema was committed).
            if schema_version(&conn)? == SCHEMA_VERSION {
                return Self::configure(conn, store_dir);
            }
        }
        let _exclusive = FileLock::exclusive(&lock_file)?;
        let conn = open()?;
        conn.pragma_update(None, "journal_mode", "wal").map_err(db_err)?;
        Self::migrate(conn, store_dir)
    }

    #[cfg(test)]
    pub(crate) fn open_in_memory(store_dir: StoreDir) -> Result<Self, StoreError> {
        Self::migrate(Connection::open_in_memory().map_err(db_err)?, store_dir)
    }

    /// Bring the schema up to date in one IMMEDIATE transaction (nothing
    /// of a migration is seen half done), then configure the connection.
    fn migrate(mut conn: Connection, store_dir: StoreDir) -> Result<Self, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Database(format!(
                "the database has schema version {version}, newer than this drv understands ({SCHEMA_VERSION}); upgrade drv"
            )));
        }
        for migration in &MIGRATIONS[version.max(0) as usize..] {
            tx.execute_batch(migration).map_err(db_err)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Self::configure(conn, store_dir)
    }

    /// The per-connection settings of a database whose schema is current.
    fn configure(conn: Connection, store_dir: StoreDir) -> Result<Self, StoreError> {
        conn.busy_handler(Some(wait_while_busy)).map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "normal").map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "on").map_err(db_err)?;
        // An emptied WAL is truncated at the last close, so the next open
        // has no frames to read back into the kept index.
        conn.pragma_update(None, "journal_size_limit", 0).map_err(db_err)?;
        persist_wal(&conn);
        Ok(Self { conn, store_dir })
    }

    fn render(&self, p: &StorePath) -> String {
        self.store_dir.display(p)
    }

    fn parse(&self, s: &str) -> Result<StorePath, StoreError> {
        self.store_dir
            .parse_path(s)
            .map_err(|e| StoreError::Database(format!("corrupt path in database: {e}")))
    }

    pub(crate) fn is_valid(&self, p: &StorePath) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT 1 FROM ValidPaths WHERE path = ?1")
            .and_then(|mut s| s.exists([self.render(p)]))
            .map_err(db_err)
    }

    /// The valid path whose hash part is `hash_part`, with its row id and
    /// its registered NAR hash (as stored), if any: one index range scan,
    /// as paths sort by their hash part.
    pub(crate) fn path_from_hash_part(&self, hash_part: &str) -> Result<Option<(StorePath, i64, String)>, StoreError> {
        let prefix = format!("{}/{hash_part}", self.store_dir.as_str().trim_end_matches('/'));
        let found: Option<(String, i64, String)> = self
            .conn
            .prepare_cached("SELECT path, id, hash FROM ValidPaths WHERE path >= ?1 AND path < ?2 LIMIT 1")
            .and_then(|mut s| {
                s.query_row([format!("{prefix}-"), format!("{prefix}.")], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(db_err)?;
        found
            .map(|(p, id, hash)| Ok((self.store_dir.parse_path(&p)?, id, hash)))
            .transpose()
    }

    pub(crate) fn path_info(&self, p: &StorePath) -> Result<Option<PathInfo>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, hash, narSize, registrationTime, deriver, ca, sigs FROM ValidPaths WHERE path = ?1",
            )
            .and_then(|mut s| {
                s.query_row([self.render(p)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                })
                .optional()
            })
            .map_err(db_err)?;
        let Some((id, hash, size, time, deriver, ca, sigs)) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Database(format!("corrupt {what} for {}: {e}", self.render(p)))
        };
        let references = self
            .conn
            .prepare_cached(
                "SELECT v.path FROM Refs r JOIN ValidPaths v ON v.id = r.reference WHERE r.referrer = ?1",
            )
            .and_then(|mut s| s.query_map([id], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>())
            .map_err(db_err)?
            .iter()
            .map(|s| self.parse(s))
            .collect::<Result<_, _>>()?;
        Ok(Some(PathInfo {
            path: p.clone(),
            nar_hash: Sha256::parse(&hash).map_err(|e| corrupt("hash", &e))?,
            nar_size: size.unwrap_or(0) as u64,
            references,
            deriver: deriver.map(|d| self.parse(&d)).transpose()?,
            registration_time: time,
            ca: ca.map(|c| ContentAddress::parse(&c)).transpose().map_err(|e| corrupt("ca", &e))?,
            signatures: sigs
                // A store written before drv refused malformed signatures
                // may hold some; they are left out so the path can still be
                // pushed and served (its narinfo could not be written).
                .map(|s| {
                    s.split_whitespace()
                        .filter(|s| drv_formats::canonical_signature(s).is_some())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }

    /// Register paths in one transaction, with the derivation outputs
    /// `outputs` (a `.drv` path, valid already, and output name → path)
    /// in the same one. References must be valid already or among
    /// `infos`; re-registering a valid path updates its metadata.
    pub(crate) fn register(
        &mut self,
        infos: &[PathInfo],
        outputs: Option<(&StorePath, &BTreeMap<String, StorePath>)>,
    ) -> Result<(), StoreError> {
        let store_dir = self.store_dir.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut ids = BTreeMap::new();
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO ValidPaths (path, hash, registrationTime, deriver, narSize, sigs, ca)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(path) DO UPDATE SET hash = excluded.hash, deriver = excluded.deriver,
                       narSize = excluded.narSize, sigs = excluded.sigs, ca = excluded.ca
                     RETURNING id",
                )
                .map_err(db_err)?;
            for info in infos {
                let id: i64 = upsert
                    .query_row(
                        params![
                            store_dir.display(&info.path),
                            format!("sha256:{}", info.nar_hash.to_hex()),
                            info.registration_time,
                            info.deriver.as_ref().map(|d| store_dir.display(d)),
                            info.nar_size as i64,
                            (!info.signatures.is_empty()).then(|| info.signatures.join(" ")),
                            info.ca.map(|c| c.to_nix_string()),
                        ],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                ids.insert(info.path.clone(), id);
            }
            let mut lookup = tx.prepare_cached("SELECT id FROM ValidPaths WHERE path = ?1").map_err(db_err)?;
            let mut add_ref = tx
                .prepare_cached("INSERT OR IGNORE INTO Refs (referrer, reference) VALUES (?1, ?2)")
                .map_err(db_err)?;
            for info in infos {
                let referrer = ids[&info.path];
                for r in &info.references {
                    let reference = match ids.get(r) {
                        Some(id) => *id,
                        None => lookup
                            .query_row([store_dir.display(r)], |row| row.get(0))
                            .optional()
                            .map_err(db_err)?
                            .ok_or_else(|| StoreError::InvalidReference {
                                path: store_dir.display(&info.path),
                                reference: store_dir.display(r),
                            })?,
                    };
                    add_ref.execute([referrer, reference]).map_err(db_err)?;
                }
            }
        }
        if let Some((drv, outputs)) = outputs {
            insert_derivation_outputs(&tx, &store_dir, drv, outputs)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Record which output paths a derivation (already valid) has.
    pub(crate) fn register_derivation_outputs(
        &mut self,
        drv: &StorePath,
        outputs: &BTreeMap<String, StorePath>,
    ) -> Result<(), StoreError> {
        // Immediate: a read that later writes could not wait for another writer.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        insert_derivation_outputs(&tx, &self.store_dir, drv, outputs)?;
        tx.commit().map_err(db_err)
    }

    pub(crate) fn all_valid_paths(&self) -> Result<Vec<StorePath>, StoreError> {
        let rows = self
            .conn
            .prepare_cached("SELECT path FROM ValidPaths ORDER BY path")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>())
            .map_err(db_err)?;
        rows.iter().map(|s| self.parse(s)).collect()
    }

    /// The whole reference graph in one query: `referrer → references`.
    pub(crate) fn reference_graph(&self) -> Result<BTreeMap<StorePath, BTreeSet<StorePath>>, StoreError> {
        let mut graph: BTreeMap<StorePath, BTreeSet<StorePath>> = BTreeMap::new();
        for p in self.all_valid_paths()? {
            graph.entry(p).or_default();
        }
        let rows = self
            .conn
            .prepare_cached(
                "SELECT a.path, b.path FROM Refs r JOIN ValidPaths a ON a.id = r.referrer JOIN ValidPaths b ON b.id = r.reference",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db_err)?;
        for (a, b) in rows {
            graph.entry(self.parse(&a)?).or_default().insert(self.parse(&b)?);
        }
        Ok(graph)
    }

    /// Everything the collector needs, in three queries (paths with their
    /// metadata, all references, all derivation outputs) rather than one
    /// per path.
    pub(crate) fn gc_graph(&self) -> Result<GcGraph, StoreError> {
        let rows = self
            .conn
            .prepare("SELECT id, path, registrationTime, narSize, deriver FROM ValidPaths")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db_err)?;
        let mut graph = GcGraph::default();
        let mut index_of_id = std::collections::HashMap::with_capacity(rows.len());
        let mut derivers = Vec::with_capacity(rows.len());
        for (i, (id, path, time, size, deriver)) in rows.into_iter().enumerate() {
            index_of_id.insert(id, i);
            derivers.push(deriver);
            graph.nodes.push(GcNode {
                id,
                path,
                registration_time: time,
                nar_size: size.unwrap_or(0) as u64,
                deriver: None,
                references: Vec::new(),
                outputs: Vec::new(),
            });
        }
        let index_of_path: std::collections::HashMap<String, usize> =
            graph.nodes.iter().enumerate().map(|(i, n)| (n.path.clone(), i)).collect();
        for (node, deriver) in graph.nodes.iter_mut().zip(derivers) {
            node.deriver = deriver.and_then(|d| index_of_path.get(&d).copied());
        }
        let mut refs = self.conn.prepare("SELECT referrer, reference FROM Refs").map_err(db_err)?;
        let mut q = refs.query([]).map_err(db_err)?;
        while let Some(r) = q.next().map_err(db_err)? {
            let (a, b): (i64, i64) = (r.get(0).map_err(db_err)?, r.get(1).map_err(db_err)?);
            if let (Some(&a), Some(&b)) = (index_of_id.get(&a), index_of_id.get(&b)) {
                graph.nodes[a].references.push(b);
            }
        }
        let mut outs = self.conn.prepare("SELECT drv, path FROM DerivationOutputs").map_err(db_err)?;
        let mut q = outs.query([]).map_err(db_err)?;
        while let Some(r) = q.next().map_err(db_err)? {
            let drv: i64 = r.get(0).map_err(db_err)?;
            let out: String = r.get(1).map_err(db_err)?;
            if let (Some(&d), Some(&o)) = (index_of_id.get(&drv), index_of_path.get(out.as_str())) {
                graph.nodes[d].outputs.push(o);
            }
        }
        Ok(graph)
    }

    /// Unregister paths by row id in one transaction. A path that a valid
    /// path outside `ids` still refers to is left valid (the foreign key
    /// refuses it), and so are paths before it in `ids` that refer to it;
    /// the result says, per id, whether it was unregistered.
    pub(crate) fn unregister(&mut self, ids: &[i64]) -> Result<Vec<bool>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let done = match Self::unregister_all(&tx, ids) {
            Ok(()) => vec![true; ids.len()],
            // A path outside `ids` refers to one of them: go one by one.
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Self::unregister_each(&tx, ids)?
            }
            Err(e) => return Err(db_err(e)),
        };
        tx.commit().map_err(db_err)?;
        Ok(done)
    }

    /// Unregister all of `ids` in two statements, or none of them. Much
    /// cheaper than a statement per path: SQLite journals each page a
    /// statement touches, once per statement. The references of the paths
    /// go first, as `ON DELETE RESTRICT` fires row by row in the table's
    /// order, not in ours.
    fn unregister_all(tx: &rusqlite::Transaction, ids: &[i64]) -> rusqlite::Result<()> {
        use std::fmt::Write;
        let mut list = String::with_capacity(ids.len() * 8);
        for (n, id) in ids.iter().enumerate() {
            let _ = write!(list, "{}{id}", if n == 0 { "" } else { "," });
        }
        tx.execute_batch(&format!(
            "SAVEPOINT unregister;
             DELETE FROM Refs WHERE referrer IN ({list});
             DELETE FROM ValidPaths WHERE id IN ({list});
             RELEASE unregister;"
        ))
        .inspect_err(|_| {
            let _ = tx.execute_batch("ROLLBACK TO unregister; RELEASE unregister;");
        })
    }

    fn unregister_each(tx: &rusqlite::Transaction, ids: &[i64]) -> Result<Vec<bool>, StoreError> {
        let mut done = Vec::with_capacity(ids.len());
        let mut delete = tx.prepare_cached("DELETE FROM ValidPaths WHERE id = ?1").map_err(db_err)?;
        for id in ids {
            match delete.execute([id]) {
                Ok(n) => done.push(n == 1),
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    done.push(false)
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        Ok(done)
    }

    pub(crate) fn referrers(&self, p: &StorePath) -> Result<BTreeSet<StorePath>, StoreError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT a.path FROM Refs r JOIN ValidPaths a ON a.id = r.referrer
                 JOIN ValidPaths b ON b.id = r.reference WHERE b.path = ?1",
            )
            .and_then(|mut s| s.query_map([self.render(p)], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>())
            .map_err(db_err)?;
        rows.iter().map(|s| self.parse(s)).collect()
    }

    pub(crate) fn derivation_outputs(&self, drv: &StorePath) -> Result<BTreeMap<String, StorePath>, StoreError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT o.id, o.path FROM DerivationOutputs o JOIN ValidPaths v ON v.id = o.drv WHERE v.path = ?1",
            )
            .and_then(|mut s| {
                s.query_map([self.render(drv)], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db_err)?;
        rows.into_iter().map(|(n, p)| Ok((n, self.parse(&p)?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(base: &str, refs: &[&str]) -> PathInfo {
        PathInfo {
            path: base.parse().unwrap(),
            nar_hash: Sha256::digest(base.as_bytes()),
            nar_size: 120,
            references: refs.iter().map(|r| r.parse().unwrap()).collect(),
            deriver: None,
            registration_time: 1700000000,
            ca: None,
            signatures: vec![],
        }
    }

    const A: &str = "ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-a";
    const B: &str = "sa54706c73s1kg3sswp5ym9rhmdvj6c7-b";

    #[test]
    fn registration_round_trips_and_checks_references() {
        let mut db = Db::open_in_memory(StoreDir::default()).unwrap();
        let a = info(A, &[A]);
        let b = info(B, &[A]);
        db.register(&[b.clone(), a.clone()], None).unwrap();
        assert_eq!(db.path_info(&a.path).unwrap().unwrap(), a);
        assert_eq!(db.path_info(&b.path).unwrap().unwrap(), b);
        assert_eq!(db.referrers(&a.path).unwrap().len(), 2);
        let graph = db.reference_graph().unwrap();
        assert_eq!(graph[&b.path], BTreeSet::from([a.path.clone()]));
    }

    #[test]
    fn a_dangling_reference_rolls_back_the_whole_batch() {
        let mut db = Db::open_in_memory(StoreDir::default()).unwrap();
        let err = db.register(&[info(A, &[]), info(B, &["zwx6xaxcggwglfv7x2x1xblw5w2w6877-c"])], None).unwrap_err();
        assert!(matches!(err, StoreError::InvalidReference { .. }), "{err}");
        assert!(db.all_valid_paths().unwrap().is_empty());
    }

    #[test]
    fn newer_schema_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("db.sqlite");
        drop(Db::open(&f, StoreDir::default()).unwrap());
        Connection::open(&f).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Db::open(&f, StoreDir::default()).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn unregister_refuses_paths_still_referred_to() {
        const C: &str = "0wx6xaxcggwglfv7x2x1xblw5w2w6877-c";
        let mut db = Db::open_in_memory(StoreDir::default()).unwrap();
        db.register(&[info(A, &[A]), info(B, &[A]), info(C, &[A])], None).unwrap();
        let g = db.gc_graph().unwrap();
        let id = |p: &str| g.nodes.iter().find(|n| n.path.ends_with(p)).unwrap().id;
        let (a, b, c) = (id(A), id(B), id(C));
        // C, outside the batch, still refers to A: A stays, B goes.
        assert_eq!(db.unregister(&[a, b]).unwrap(), vec![false, true]);
        assert_eq!(db.all_valid_paths().unwrap().len(), 2);
        // Referrer and reference in one batch, in either order.
        assert_eq!(db.unregister(&[a, c]).unwrap(), vec![true, true]);
        assert!(db.all_valid_paths().unwrap().is_empty());
    }
}
