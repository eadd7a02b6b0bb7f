//! The local runtime's data directory: `iras.db` holds incidents (the embedded store),
//! `executions.db` the engine's executions, timers and task tokens. Each file versions its own
//! schema in SQLite's `user_version` (one number per file, hence two files).
//!
//! A directory written before the split kept both in `iras.db`. Opening it copies that file,
//! whole and consistent, to `executions.db`, then drops from each file the tables the other
//! owns: waiting approvals, their tokens and their deadlines survive the upgrade.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// The incident store's file.
pub const INCIDENTS_FILE: &str = "iras.db";
/// The engine's file.
pub const EXECUTIONS_FILE: &str = "executions.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFiles {
    pub incidents: PathBuf,
    pub executions: PathBuf,
}

impl DataFiles {
    pub fn in_dir(dir: &Path) -> DataFiles {
        DataFiles {
            incidents: dir.join(INCIDENTS_FILE),
            executions: dir.join(EXECUTIONS_FILE),
        }
    }

    /// Creates the directory, and splits a pre-split `iras.db` (see the module doc). Safe to
    /// call on every start: each step finds its work done or does it, so a crash mid-way is
    /// finished by the next start.
    pub fn prepare(&self) -> Result<(), String> {
        if let Some(dir) = self.incidents.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
            private(dir, 0o700)?;
        }
        // Incidents hold alert payloads, approvers and log lines: owner-only, created so before
        // SQLite first opens them (its -wal and -shm files take the same mode).
        if !self.incidents.exists() {
            create_private(&self.incidents)?;
        }
        private(&self.incidents, 0o600)?;
        let shown = |p: &Path| p.display().to_string();
        if !self.executions.exists() && has_tables(&self.incidents, Owner::Engine)? {
            // Copy first, to a temporary name renamed into place: a crash leaves either no
            // executions file (and the split runs again) or a complete one.
            let partial = self.executions.with_extension("db.partial");
            let _ = std::fs::remove_file(&partial);
            let conn = open(&self.incidents)?;
            conn.execute("VACUUM INTO ?1", [partial.to_string_lossy()])
                .map_err(|e| {
                    format!(
                        "cannot copy executions out of {}: {e}",
                        shown(&self.incidents)
                    )
                })?;
            drop(conn);
            std::fs::rename(&partial, &self.executions)
                .map_err(|e| format!("cannot create {}: {e}", shown(&self.executions)))?;
            tracing::info!(from = %shown(&self.incidents), to = %shown(&self.executions), "executions moved to their own file");
        }
        if self.executions.exists() {
            drop_tables(&self.incidents, Owner::Engine)?;
            drop_tables(&self.executions, Owner::Incidents)?;
        } else {
            // Created only now: an absent file is what tells a pre-split directory above.
            create_private(&self.executions)?;
        }
        private(&self.executions, 0o600)
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn create_private(_: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(unix)]
fn private(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn private(_: &Path, _: u32) -> Result<(), String> {
    Ok(())
}

/// Whose tables a file holds.
#[derive(Clone, Copy)]
enum Owner {
    /// `sfn_local`'s execution store: every table prefixed `asl_`.
    Engine,
    /// [`crate::store::SqliteStore`]: [`crate::store::TABLES`].
    Incidents,
}

impl Owner {
    fn owns(self, table: &str) -> bool {
        match self {
            Owner::Engine => table.starts_with(sfn_local::exec_store::TABLE_PREFIX),
            Owner::Incidents => crate::store::TABLES.contains(&table),
        }
    }
}

fn open(path: &Path) -> Result<Connection, String> {
    crate::store::open_connection(path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn tables(conn: &Connection, owner: Owner) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names.into_iter().filter(|n| owner.owns(n)).collect())
}

fn has_tables(path: &Path, owner: Owner) -> Result<bool, String> {
    if !path.exists() {
        return Ok(false);
    }
    let conn = open(path)?;
    tables(&conn, owner)
        .map(|t| !t.is_empty())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn drop_tables(path: &Path, owner: Owner) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    let mut conn = open(path)?;
    let fail = |e: rusqlite::Error| format!("cannot tidy {}: {e}", path.display());
    let names = tables(&conn, owner).map_err(fail)?;
    if names.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction().map_err(fail)?;
    for n in &names {
        // Names come from sqlite_master, filtered by the owners' fixed names: never from input.
        tx.execute_batch(&format!("DROP TABLE IF EXISTS \"{n}\";"))
            .map_err(fail)?;
    }
    tx.commit().map_err(fail)
}
