//! The state file: the learned verifier of each credential set, `<[state] dir>/verifiers.json`.
//!
//! Written whole on every change, atomically: a temporary file in the same directory (created
//! mode 0600), written and fsynced, then renamed over the old one and the directory fsynced. A
//! crash at any point leaves either the old file or the new one, never a mix. Read once at
//! start: a file that cannot be read, is readable by group or others, or does not parse stops
//! the start (a silently empty store would turn every `required` set into `no_verifier`, and
//! after 20 Feb 2027 the verifiers cannot be learned again).

use crate::password::Verifier;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// The state file's name in `[state] dir`.
pub const FILE_NAME: &str = "verifiers.json";

/// The format written; a file of another version is refused.
const VERSION: u32 = 1;

/// A credential set: the app's client id as the login names it, and the username in lower
/// case (Salesforce usernames are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetKey {
    pub client_id: String,
    pub username: String,
}

impl SetKey {
    pub fn new(client_id: &str, username: &str) -> SetKey {
        SetKey {
            client_id: client_id.to_owned(),
            // Full Unicode lowercase, as the rollout bucket and the report use.
            username: username.to_lowercase(),
        }
    }
}

/// Why the state file cannot be used. Names the file and the fix, never a verifier.
#[derive(Debug, thiserror::Error)]
#[error("state.dir: {path}: {problem}")]
pub struct StoreError {
    path: String,
    problem: String,
}

fn error(path: &Path, problem: impl Into<String>) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    verifiers: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    client_id: String,
    username: String,
    verifier: String,
    learned_at: String,
}

#[derive(Clone)]
struct Learned {
    verifier: Verifier,
    learned_at: String,
}

/// The learned verifiers, in memory and in the state file.
pub struct Store {
    dir: PathBuf,
    path: PathBuf,
    entries: RwLock<HashMap<SetKey, Learned>>,
    /// Held while the file is written (one writer at a time); counts the writes.
    writes: Mutex<u64>,
}

impl Store {
    /// What `grantshift check` and the start check: the file, if there is one, is the owner's
    /// only and parses; if there is none, its directory is one or can be made. Creates
    /// nothing. Returns how many verifiers the file holds.
    pub fn check(dir: &Path) -> Result<usize, StoreError> {
        Ok(read(dir)?.len())
    }

    /// Read the state file in `dir` (none yet: an empty store).
    pub fn load(dir: &Path) -> Result<Store, StoreError> {
        let entries = read(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            path: dir.join(FILE_NAME),
            entries: RwLock::new(entries),
            writes: Mutex::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The learned verifier of `set`.
    pub fn get(&self, set: &SetKey) -> Option<Verifier> {
        self.read_entries().get(set).map(|l| l.verifier.clone())
    }

    pub fn len(&self) -> usize {
        self.read_entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every set and its learned verifier.
    pub fn entries(&self) -> Vec<(SetKey, Verifier)> {
        self.read_entries()
            .iter()
            .map(|(set, l)| (set.clone(), l.verifier.clone()))
            .collect()
    }

    /// Every learned verifier (to tell which throttle states are still in use).
    pub fn verifiers(&self) -> Vec<Verifier> {
        self.read_entries()
            .values()
            .map(|l| l.verifier.clone())
            .collect()
    }

    /// Make `verifier` the learned verifier of `set` and write the file. Blocking: call it off
    /// the async threads. Returns the verifier it replaced, and whether the write succeeded
    /// (if not, the new verifier holds in memory until the proxy stops).
    pub fn insert(
        &self,
        set: &SetKey,
        verifier: Verifier,
    ) -> (Option<Verifier>, std::io::Result<()>) {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let replaced = self
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                set.clone(),
                Learned {
                    verifier,
                    learned_at: now_rfc3339(),
                },
            )
            .map(|old| old.verifier);
        *writes += 1;
        let bytes = self.serialize();
        (
            replaced,
            write_atomic(&self.dir, &self.path, &bytes, *writes),
        )
    }

    fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SetKey, Learned>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn serialize(&self) -> Vec<u8> {
        let entries = self.read_entries();
        let mut verifiers: Vec<Entry> = entries
            .iter()
            .map(|(set, learned)| Entry {
                client_id: set.client_id.clone(),
                username: set.username.clone(),
                verifier: learned.verifier.as_phc().to_owned(),
                learned_at: learned.learned_at.clone(),
            })
            .collect();
        verifiers.sort_by(|a, b| (&a.client_id, &a.username).cmp(&(&b.client_id, &b.username)));
        let mut bytes = serde_json::to_vec_pretty(&StateFile {
            version: VERSION,
            verifiers,
        })
        .expect("the state serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// The entries of the state file in `dir`, checked as [`Store::check`] says.
fn read(dir: &Path) -> Result<HashMap<SetKey, Learned>, StoreError> {
    let path = dir.join(FILE_NAME);
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(error(dir, "is not a directory")),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            // Created with the first learned verifier: something above it must be a directory.
            let mut above = dir.parent();
            while let Some(p) = above.filter(|p| !p.as_os_str().is_empty()) {
                match std::fs::metadata(p) {
                    Ok(meta) if meta.is_dir() => return Ok(HashMap::new()),
                    Ok(_) => {
                        return Err(error(
                            dir,
                            format!("cannot be created: {} is not a directory", p.display()),
                        ))
                    }
                    Err(_) => above = p.parent(),
                }
            }
            return Ok(HashMap::new());
        }
        Err(e) => return Err(error(dir, format!("cannot read: {e}"))),
    }
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(error(&path, format!("cannot read: {e}"))),
    };
    if !meta.is_file() {
        return Err(error(&path, "is not a file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(error(
            &path,
            format!(
                "holds password verifiers and is readable by group or others (mode {:o}): chmod 600 {}",
                meta.mode() & 0o777,
                path.display()
            ),
        ));
    }
    let text = std::fs::read(&path).map_err(|e| error(&path, format!("cannot read: {e}")))?;
    let corrupt = |why: String| {
        error(
            &path,
            format!(
                "is not a valid state file ({why}); it holds the learned password verifiers: \
                 restore it from a backup, or move it aside to start without them"
            ),
        )
    };
    let file: StateFile = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != VERSION {
        return Err(corrupt(format!(
            "version {} (this grantshift reads version {VERSION})",
            file.version
        )));
    }
    let mut entries = HashMap::with_capacity(file.verifiers.len());
    for (i, entry) in file.verifiers.into_iter().enumerate() {
        let verifier = Verifier::parse(&entry.verifier)
            .map_err(|e| corrupt(format!("verifiers[{i}].verifier: {e}")))?;
        let set = SetKey::new(&entry.client_id, &entry.username);
        let learned = Learned {
            verifier,
            learned_at: entry.learned_at,
        };
        if entries.insert(set, learned).is_some() {
            return Err(corrupt(format!(
                "verifiers[{i}]: the credential set is listed twice"
            )));
        }
    }
    Ok(entries)
}

/// Replace the file at `path` (in `dir`) with `bytes`: a temporary file, fsynced, renamed over
/// it, and the directory fsynced. `nth` is the process's count of state writes (for a test
/// build's stall point).
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8], nth: u64) -> std::io::Result<()> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(named)?;
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    // Left by a crash: created anew below, so its mode is ours.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(named(e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(named)?;
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    file.write_all(first).map_err(named)?;
    // Test builds: a crash test can make this write stop here for good and kill the process.
    crate::fault::stall_if_env("GRANTSHIFT_FAULT_STALL_STATE_WRITE", nth);
    file.write_all(rest).map_err(named)?;
    file.sync_all().map_err(named)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(named)?;
    // The rename is durable once the directory is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(named)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::{Cost, Password};
    use std::os::unix::fs::PermissionsExt;

    fn cheap(password: &str) -> Verifier {
        Verifier::hash(
            &Password::new(password),
            Cost {
                memory_kib: 8,
                passes: 1,
                lanes: 1,
            },
        )
    }

    #[test]
    fn a_new_store_writes_its_file_mode_0600_in_a_new_directory_and_reads_it_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state/nested");
        assert_eq!(
            Store::check(&dir).unwrap(),
            0,
            "a missing directory is fine"
        );
        let store = Store::load(&dir).unwrap();
        assert!(
            !dir.exists(),
            "nothing is created before a verifier is learned"
        );
        let set = SetKey::new("app", "Int@Acme.com");
        let v = cheap("pw-1");
        let (replaced, written) = store.insert(&set, v.clone());
        written.unwrap();
        assert_eq!(replaced, None);
        let meta = std::fs::metadata(store.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(!dir.join("verifiers.json.tmp").exists());

        let again = Store::load(&dir).unwrap();
        assert_eq!(
            again.get(&SetKey::new("app", "int@acme.com")),
            Some(v.clone())
        );
        assert_eq!(again.get(&SetKey::new("other", "int@acme.com")), None);
        let (replaced, written) = again.insert(&set, cheap("pw-2"));
        written.unwrap();
        assert_eq!(replaced, Some(v));
        assert_eq!(Store::check(&dir).unwrap(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_whole() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::load(root.path()).unwrap();
        let set = SetKey::new("app", "int@acme.com");
        let old = cheap("pw-old");
        store.insert(&set, old.clone()).1.unwrap();
        let before = std::fs::read(store.path()).unwrap();
        // The temporary file cannot be made (a directory is in its place).
        let tmp = root.path().join("verifiers.json.tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("x"), "x").unwrap();
        let (_, written) = store.insert(&SetKey::new("app", "b@acme.com"), cheap("pw-b"));
        let err = written.unwrap_err().to_string();
        assert!(err.contains("verifiers.json"), "{err}");
        assert_eq!(std::fs::read(store.path()).unwrap(), before, "untouched");
        let reread = Store::load(root.path()).unwrap();
        assert_eq!(reread.get(&set), Some(old));
        assert_eq!(reread.len(), 1);
        // In memory the new one holds.
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn an_unreadable_corrupt_or_open_file_stops_the_start() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join(FILE_NAME);
        let expect_err = |contains: &str| {
            let err = Store::load(root.path()).err().expect("refused").to_string();
            assert!(err.starts_with("state.dir: "), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(contains), "{contains}: {err}");
            assert_eq!(
                Store::check(root.path()).unwrap_err().to_string(),
                err,
                "check says the same"
            );
        };
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("{\"version\":1,\"verifiers\":[", 0o600);
        expect_err("is not a valid state file");
        write("", 0o600);
        expect_err("move it aside");
        write("{\"version\":2,\"verifiers\":[]}", 0o600);
        expect_err("version 2");
        write(
            "{\"version\":1,\"verifiers\":[{\"client_id\":\"a\",\"username\":\"u\",\"verifier\":\"x-SECRET\",\"learned_at\":\"\"}]}",
            0o600,
        );
        expect_err("verifiers[0].verifier");
        let err = Store::load(root.path()).err().unwrap().to_string();
        assert!(!err.contains("x-SECRET"), "no verifier in the error: {err}");
        write("{\"version\":1,\"verifiers\":[]}", 0o644);
        expect_err("chmod 600");
        write("{\"version\":1,\"verifiers\":[]}", 0o600);
        Store::load(root.path()).unwrap();

        let file = root.path().join("plain");
        std::fs::write(&file, "").unwrap();
        let err = Store::check(&file).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        let err = Store::check(&file.join("state")).unwrap_err().to_string();
        assert!(err.contains("cannot be created"), "{err}");
    }
}
