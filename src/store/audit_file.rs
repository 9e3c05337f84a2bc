//! The audit log as an append-only file of JSON lines, [`FILE_NAME`] in the data directory.
//!
//! Line `n` contains the entry with sequence number `n`, so the file is in log order and an
//! operator can tail it or ship it as it grows. An append is one `write(2)`: once it returns,
//! the entry is in the kernel's page cache and survives `kill -9`. [`AuditSync`] makes it
//! durable on disk with the next flush of the database.
//!
//! Earlier versions kept the entries in a sled tree; opening the store moves them here.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::StoreError;
use super::records::AuditEntry;
use super::sled_store::{database, decode, encode};

/// The log's file name in the data directory.
pub const FILE_NAME: &str = "audit.jsonl";
/// A search for an entry reads forward once it has narrowed the file to this many bytes.
const SCAN_BYTES: u64 = 64 * 1024;

/// The open log: the appending handle, where the last complete entry ends, and that entry.
#[derive(Debug)]
pub struct AuditFile {
    path: PathBuf,
    file: File,
    /// Byte length of the complete entries; an append that fails is cut back to it.
    len: u64,
    /// Set when a failed append could not be cut back, so the file may end in a partial line:
    /// further appends are refused rather than joined to it.
    broken: bool,
    last: Option<AuditEntry>,
    unsynced: Arc<AtomicBool>,
}

/// A second handle on the log for the flush thread, which syncs it when entries were added.
#[derive(Debug)]
pub struct AuditSync {
    /// Locked across a sync, so that a second caller waits for a sync in progress.
    file: Mutex<File>,
    unsynced: Arc<AtomicBool>,
}

impl AuditFile {
    /// Opens or creates the log in `dir` and reads its last entry.
    ///
    /// A crash can leave a partial last line. It is cut off with a warning, because its entry
    /// was not completely written. A complete last line that is not an entry is an error.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|error| io_error(&path, &error))?;
        let size = file
            .metadata()
            .map_err(|error| io_error(&path, &error))?
            .len();

        let (last_start, mut len) =
            last_line(&file, size).map_err(|error| io_error(&path, &error))?;
        let mut last = match last_start {
            Some(start) => Some(read_last_entry(&path, start)?),
            None => None,
        };
        if len < size {
            let next_seq = last.as_ref().map_or(0, |entry| entry.seq + 1);
            match read_tail_entry(&path, len, next_seq)? {
                // Only the newline is missing: keep the entry and end its line.
                Some(entry) => {
                    tracing::warn!(
                        path = %path.display(),
                        seq = entry.seq,
                        "the audit log's last entry had no final newline; adding it"
                    );
                    (&file)
                        .write_all(b"\n")
                        .map_err(|error| io_error(&path, &error))?;
                    len = size + 1;
                    last = Some(entry);
                }
                None => {
                    tracing::warn!(
                        path = %path.display(),
                        bytes = size - len,
                        "the audit log ended in a partial entry from a crash; removing it"
                    );
                    file.set_len(len).map_err(|error| io_error(&path, &error))?;
                }
            }
        }
        Ok(Self {
            path,
            file,
            len,
            broken: false,
            last,
            unsynced: Arc::default(),
        })
    }

    /// Returns a handle with which another thread syncs the log.
    pub fn sync_handle(&self) -> Result<AuditSync, StoreError> {
        Ok(AuditSync {
            file: Mutex::new(
                self.file
                    .try_clone()
                    .map_err(|error| io_error(&self.path, &error))?,
            ),
            unsynced: self.unsynced.clone(),
        })
    }

    /// Seals the next entry with `seal` and appends it.
    pub fn append(
        &mut self,
        seal: &mut dyn FnMut(Option<&AuditEntry>) -> AuditEntry,
    ) -> Result<AuditEntry, StoreError> {
        let entry = seal(self.last.as_ref());
        self.write_line(&entry)?;
        self.last = Some(entry.clone());
        Ok(entry)
    }

    /// Appends `entry` as it is, for entries sealed by an earlier version of the store.
    fn append_sealed(&mut self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write_line(&entry)?;
        self.last = Some(entry);
        Ok(())
    }

    fn write_line(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        if self.broken {
            return Err(StoreError::Database(format!(
                "audit log {} may end in a partial entry after a failed write; restart the service",
                self.path.display()
            )));
        }
        let mut line = encode(entry)?;
        line.push(b'\n');
        if let Err(error) = self.file.write_all(&line) {
            // Cut off whatever part of the line was written, so the next entry starts a line.
            self.broken = self.file.set_len(self.len).is_err();
            return Err(io_error(&self.path, &error));
        }
        self.len += line.len() as u64;
        self.unsynced.store(true, Ordering::Release);
        Ok(())
    }

    /// Lists up to `limit` entries from sequence number `from` on.
    pub fn list(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut offset = self.seek(from)?;
        let mut reader = reader_at(&self.path, offset)?;
        let mut line = Vec::new();
        let mut entries = Vec::new();
        while entries.len() < limit && offset < self.len {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|error| io_error(&self.path, &error))?;
            let entry = decode_line(offset, &line)?;
            if entry.seq >= from {
                entries.push(entry);
            }
            offset += read as u64;
        }
        Ok(entries)
    }

    /// Returns a line start at or before the first entry numbered `from` or later.
    ///
    /// Entries are in sequence order, so a bisection over byte offsets narrows the range:
    /// every line that starts before `low` contains an earlier entry.
    fn seek(&self, from: u64) -> Result<u64, StoreError> {
        let (mut low, mut high) = (0, self.len);
        while low < high && high - low > SCAN_BYTES {
            let middle = low + (high - low) / 2;
            match read_line_after(&self.path, middle, high)? {
                Some((_, next, entry)) if entry.seq < from => low = next,
                Some((start, _, _)) => high = start,
                None => high = middle,
            }
        }
        Ok(low)
    }

    /// Moves the entries of an earlier version's sled tree into the file, those not already
    /// in it, syncs the file, and drops the tree.
    pub fn import_tree(&mut self, db: &sled::Db, tree_name: &str) -> Result<(), StoreError> {
        if !db
            .tree_names()
            .iter()
            .any(|name| name == tree_name.as_bytes())
        {
            return Ok(());
        }
        let tree = db.open_tree(tree_name).map_err(database)?;
        let next_seq = self.last.as_ref().map_or(0, |entry| entry.seq + 1);
        let mut imported = 0_u64;
        for item in tree.range(next_seq.to_be_bytes()..) {
            let (key, value) = item.map_err(database)?;
            let entry: AuditEntry = decode(&key, &value)?;
            // Reject an entry that would join two different chains, as after a downgrade.
            crate::audit::verify(self.last.as_ref(), [&entry]).map_err(|error| {
                StoreError::Corrupt(format!("audit entry {}", entry.seq), error.to_string())
            })?;
            self.append_sealed(entry)?;
            imported += 1;
        }
        self.file
            .sync_data()
            .map_err(|error| io_error(&self.path, &error))?;
        drop(tree);
        db.drop_tree(tree_name).map_err(database)?;
        if imported > 0 {
            tracing::info!(
                entries = imported,
                path = %self.path.display(),
                "moved the audit log out of the database into its own file"
            );
        }
        Ok(())
    }
}

impl AuditSync {
    /// Syncs the log's data to disk if entries were appended since the last sync.
    pub fn sync(&self) -> std::io::Result<()> {
        let file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("an audit log sync panicked"))?;
        if self.unsynced.swap(false, Ordering::AcqRel) {
            if let Err(error) = file.sync_data() {
                self.unsynced.store(true, Ordering::Release);
                return Err(error);
            }
        }
        Ok(())
    }
}

/// Finds the last complete line of a file of `size` bytes: where it starts, if there is one,
/// and where the complete lines end.
fn last_line(file: &File, size: u64) -> std::io::Result<(Option<u64>, u64)> {
    let newlines = newline_offsets_backwards(file, size, 2)?;
    let Some(&end) = newlines.first() else {
        return Ok((None, 0));
    };
    let start = newlines.get(1).map_or(0, |previous| previous + 1);
    Ok((Some(start), end + 1))
}

/// Returns the offsets of up to `count` newlines, searching back from the end of the file.
fn newline_offsets_backwards(file: &File, size: u64, count: usize) -> std::io::Result<Vec<u64>> {
    const CHUNK: u64 = 4096;
    let mut reader = file;
    let mut found = Vec::new();
    let mut end = size;
    let mut buffer = vec![0; CHUNK as usize];
    while end > 0 && found.len() < count {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buffer[..(end - start) as usize];
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(chunk)?;
        for (index, byte) in chunk.iter().enumerate().rev() {
            if *byte == b'\n' {
                found.push(start + index as u64);
                if found.len() == count {
                    break;
                }
            }
        }
        end = start;
    }
    Ok(found)
}

/// Reads the log's last complete line, which must be an entry: the chain continues from it.
fn read_last_entry(path: &Path, start: u64) -> Result<AuditEntry, StoreError> {
    read_entry_at(path, start)
        .map(|(_, entry)| entry)
        .map_err(|error| {
            StoreError::Database(format!(
                "audit log {}: the last line, at byte {start}, is not an audit entry ({error}); \
             move that line aside or restore the file from a backup, then run \
             `devbound audit verify`",
                path.display()
            ))
        })
}

/// Reads the bytes after the last newline as the entry numbered `next_seq`, if they are one.
fn read_tail_entry(
    path: &Path,
    offset: u64,
    next_seq: u64,
) -> Result<Option<AuditEntry>, StoreError> {
    let mut tail = Vec::new();
    reader_at(path, offset)?
        .read_to_end(&mut tail)
        .map_err(|error| io_error(path, &error))?;
    Ok(serde_json::from_slice::<AuditEntry>(&tail)
        .ok()
        .filter(|entry| entry.seq == next_seq))
}

/// Reads the entry on the line that starts at `offset`; returns the next line's offset too.
fn read_entry_at(path: &Path, offset: u64) -> Result<(u64, AuditEntry), StoreError> {
    let mut reader = reader_at(path, offset)?;
    let mut line = Vec::new();
    let read = reader
        .read_until(b'\n', &mut line)
        .map_err(|error| io_error(path, &error))?;
    Ok((offset + read as u64, decode_line(offset, &line)?))
}

fn decode_line(offset: u64, line: &[u8]) -> Result<AuditEntry, StoreError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    decode(
        format!("{FILE_NAME} line at byte {offset}").as_bytes(),
        line,
    )
}

/// Reads the first complete line that starts after `offset` and before `limit`: its start, the
/// next line's start and its entry.
fn read_line_after(
    path: &Path,
    offset: u64,
    limit: u64,
) -> Result<Option<(u64, u64, AuditEntry)>, StoreError> {
    let mut reader = reader_at(path, offset)?;
    let mut skipped = Vec::new();
    let partial = reader
        .read_until(b'\n', &mut skipped)
        .map_err(|error| io_error(path, &error))?;
    let start = offset + partial as u64;
    if start >= limit {
        return Ok(None);
    }
    let (next, entry) = read_entry_at(path, start)?;
    Ok(Some((start, next, entry)))
}

fn reader_at(path: &Path, offset: u64) -> Result<BufReader<File>, StoreError> {
    let mut file = File::open(path).map_err(|error| io_error(path, &error))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|error| io_error(path, &error))?;
    Ok(BufReader::new(file))
}

fn io_error(path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Database(format!("audit log {}: {error}", path.display()))
}
