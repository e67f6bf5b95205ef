//! The write-ahead log in front of the redb file (`log.wal` and `log.wal2` beside `log.redb`;
//! this is one of the two files, see [`super::durable`] for how they take turns).
//!
//! A durable redb commit rewrites a dozen scattered pages of a growing file and syncs them: about
//! half a millisecond of CPU and disk per commit on the benchmark machine, on the path of every
//! publish. So each batch is first appended here, in one write and one `fdatasync` of a few
//! kilobytes, and then committed to redb without durability (redb keeps it in memory, visible to
//! readers, and writes it with its next durable commit). Every [`CHECKPOINT_BYTES`] of log the
//! store makes one durable redb commit (a checkpoint) and empties this file.
//!
//! After a crash redb holds the state of its last durable commit; opening the store appends the
//! batches of this log that come after it, in order, then checkpoints.
//!
//! Format: records one after the other, each `u32 body length | u32 CRC-32 of the body | body`,
//! little-endian; body: `u64 first position | u32 count | count × (u32 length | encoded update)`
//! (the encoding of [`super::encoding`]). Reading stops at the first record that is short,
//! fails its checksum or does not parse (a write the crash cut, never acknowledged), and at the
//! first record whose first position does not follow the previous record's last.
//!
//! The file is kept at least [`PREALLOCATED`] bytes long, written with zeros past its records:
//! an append then overwrites blocks the file already has, and its `fdatasync` writes the data
//! alone. Appending past the end of the file also changes its size and allocates blocks, which
//! costs `fdatasync` a journal commit besides (ext4): 18 % more publishes per second on the
//! benchmark machine (bench/RESULTS.md, session 8). So emptying the log does not shorten the
//! file: it zeroes the first record's header, and the records of before stay behind it.
//! Reading never reaches them: after new records, the first old one fails the position check
//! (its positions are older), and a record cut in the middle ends the log as before. Opening
//! zeroes whatever follows the last record read, and a clean close shortens the file to nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::update::Position;

/// Log size from which the store moves appends to the other file and checkpoints this one. The
/// checkpoint runs on its own thread, but a smaller file still means a shorter durable commit
/// and less to replay after a crash (bench/RESULTS.md, session 7).
pub(super) const CHECKPOINT_BYTES: u64 = 2 << 20;

/// Size the file is kept at, zero-filled past its records (see the module documentation): room
/// for a full log and the appends made while the previous checkpoint still runs.
pub(super) const PREALLOCATED: u64 = 2 * CHECKPOINT_BYTES;

/// One batch read back from the log.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Record {
    /// Position of its first update; the others follow one by one.
    pub(super) first: Position,
    /// The encoded updates.
    pub(super) values: Vec<Vec<u8>>,
}

/// The open log.
#[derive(Debug)]
pub(super) struct Wal {
    file: File,
    /// Where the next record goes: the end of the last complete one.
    end: u64,
    /// The file's size (at least `end`; [`PREALLOCATED`] most of the time).
    size: u64,
    /// Set when a failed append could not be taken back: nothing more may be appended.
    broken: bool,
}

impl Wal {
    /// Opens (creating) the log at `path` and reads the records it holds, up to the first damaged
    /// or out-of-sequence one. What follows them is zeroed (the next append overwrites from
    /// there), and the file is brought to its preallocated size.
    pub(super) fn open(path: &Path) -> io::Result<(Self, Vec<Record>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // The file's directory entry must be durable too before anything in it counts as
        // durable (a new file's name is not covered by syncing the file's data).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, end) = parse(&bytes);
        let end = end as u64;
        let size = end.max(PREALLOCATED);
        // Drop a torn tail and older records now, so that no part of them can follow a later
        // record, and give the file its preallocated blocks.
        let tail = bytes.get(usize::try_from(end).unwrap_or(usize::MAX)..);
        let clean = tail.is_some_and(|t| t.iter().all(|&b| b == 0));
        if !clean || bytes.len() as u64 != size {
            if bytes.len() as u64 > size {
                file.set_len(size)?;
            }
            write_zeros(&file, end, size)?;
            file.sync_all()?;
        }
        let wal = Self {
            file,
            end,
            size,
            broken: false,
        };
        Ok((wal, records))
    }

    /// Bytes of complete records.
    pub(super) fn len(&self) -> u64 {
        self.end
    }

    /// Whether it holds no record.
    pub(super) fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Appends one batch and waits until it is on disk. On failure the log is cut back to what
    /// it held before, so that the batch can never be read back; if even that fails, the log
    /// refuses every later append.
    pub(super) fn append<'a>(
        &mut self,
        first: Position,
        values: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "the write-ahead log failed earlier and could not be repaired; restart the hub",
            ));
        }
        let record = encode(first, values)?;
        let written = self
            .file
            .write_all_at(&record, self.end)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.end += record.len() as u64;
                self.size = self.size.max(self.end);
                Ok(())
            }
            Err(e) => {
                self.cut_back(self.end);
                Err(e)
            }
        }
    }

    /// Takes back the last append (its batch could not be committed to redb): the log ends at
    /// `end` again.
    pub(super) fn cut_back(&mut self, end: u64) {
        let cut = self.file.set_len(end).and_then(|()| self.file.sync_all());
        match cut {
            Ok(()) => {
                // The next clear gives the file its preallocated size back.
                self.end = end;
                self.size = end;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot cut back the write-ahead log; refusing further appends");
                self.broken = true;
            }
        }
    }

    /// Empties the log, once redb holds all of it durably: zeroes the first record's header, so
    /// that the file reads as empty, and keeps its blocks for the next appends.
    pub(super) fn clear(&mut self) -> io::Result<()> {
        if self.end == 0 && self.size == PREALLOCATED {
            return Ok(());
        }
        let mut resized = false;
        if self.size > 2 * PREALLOCATED {
            // A batch far larger than usual grew it: give the room back.
            self.file.set_len(PREALLOCATED)?;
            self.size = PREALLOCATED;
            resized = true;
        }
        write_zeros(&self.file, 0, HEADER.min(self.end))?;
        if self.size < PREALLOCATED {
            write_zeros(&self.file, self.size, PREALLOCATED)?;
            resized = true;
        }
        if resized {
            self.file.sync_all()?;
        } else {
            self.file.sync_data()?;
        }
        self.end = 0;
        self.size = PREALLOCATED;
        Ok(())
    }

    /// Empties the log and gives the file's blocks back (the store is closing; the next open
    /// preallocates again).
    pub(super) fn release(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.end = 0;
        self.size = 0;
        Ok(())
    }
}

/// Bytes of a record's length and checksum.
const HEADER: u64 = 8;

/// Writes zeros over `from..to` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn encode<'a>(
    first: Position,
    values: impl ExactSizeIterator<Item = &'a [u8]>,
) -> io::Result<Vec<u8>> {
    let too_big = || io::Error::other("a batch is too large for the write-ahead log");
    let count = u32::try_from(values.len()).map_err(|_| too_big())?;
    let mut record = vec![0; 8];
    record.extend_from_slice(&first.to_le_bytes());
    record.extend_from_slice(&count.to_le_bytes());
    for value in values {
        let len = u32::try_from(value.len()).map_err(|_| too_big())?;
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(value);
    }
    let body_len = u32::try_from(record.len() - 8).map_err(|_| too_big())?;
    let crc = crc32(&record[8..]);
    record[..4].copy_from_slice(&body_len.to_le_bytes());
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(record)
}

/// The complete records of `bytes` and where they end.
fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while let Some((record, len)) = parse_record(&bytes[at..]) {
        if let Some(previous) = records.last() {
            let next = previous.first.checked_add(previous.values.len() as u64);
            if next != Some(record.first) {
                break; // left from before the log was last emptied
            }
        }
        records.push(record);
        at += len;
    }
    (records, at)
}

fn parse_record(bytes: &[u8]) -> Option<(Record, usize)> {
    let body_len = usize::try_from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(8..8usize.checked_add(body_len)?)?;
    if crc32(body) != crc {
        return None;
    }
    let mut r = body;
    let first = u64::from_le_bytes(take(&mut r, 8)?.try_into().ok()?);
    let count = u32::from_le_bytes(take(&mut r, 4)?.try_into().ok()?);
    let mut values = Vec::new();
    for _ in 0..count {
        let len = u32::from_le_bytes(take(&mut r, 4)?.try_into().ok()?);
        values.push(take(&mut r, usize::try_from(len).ok()?)?.to_vec());
    }
    if !r.is_empty() || values.is_empty() || first == 0 {
        return None;
    }
    Some((Record { first, values }, 8 + body_len))
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Some(head)
}

/// CRC-32 (IEEE 802.3, reflected, as in zlib).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn values(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i; usize::from(i) * 7 + 1]).collect()
    }

    fn append(wal: &mut Wal, first: Position, values: &[Vec<u8>]) {
        wal.append(first, values.iter().map(Vec::as_slice)).unwrap();
    }

    #[test]
    fn crc_matches_the_standard() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn records_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let (mut wal, none) = Wal::open(&path).unwrap();
        assert!(none.is_empty());
        append(&mut wal, 1, &values(3));
        append(&mut wal, 4, &values(1));
        let end = wal.len();
        drop(wal);
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(
            records,
            [
                Record {
                    first: 1,
                    values: values(3)
                },
                Record {
                    first: 4,
                    values: values(1)
                }
            ]
        );
        assert_eq!(wal.len(), end);
        wal.clear().unwrap();
        drop(wal);
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }

    #[test]
    fn a_torn_or_damaged_tail_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        append(&mut wal, 1, &values(2));
        let first_end = wal.len();
        append(&mut wal, 3, &values(4));
        let second_end = wal.len() as usize;
        drop(wal);
        let mut full = std::fs::read(&path).unwrap();
        assert!(full[second_end..].iter().all(|&b| b == 0), "zeros follow");
        full.truncate(second_end);
        // Every cut inside the second record, and every flipped byte in it, leaves the first.
        for len in first_end as usize..full.len() {
            let (records, end) = parse(&full[..len]);
            assert_eq!(records.len(), 1, "cut at {len}");
            assert_eq!(end, first_end as usize);
        }
        for i in first_end as usize..full.len() {
            let mut damaged = full.clone();
            damaged[i] ^= 0x20;
            assert_eq!(parse(&damaged).0.len(), 1, "byte {i}");
        }
        // The next append after reopening overwrites the torn tail.
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 1);
        append(&mut wal, 3, &values(1));
        drop(wal);
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].first, 3);
    }

    #[test]
    fn the_file_keeps_its_size_and_emptying_hides_the_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let size = || std::fs::metadata(&path).unwrap().len();
        let (mut wal, _) = Wal::open(&path).unwrap();
        assert_eq!(size(), PREALLOCATED);
        // Records of one size, so that a new record ends exactly where an old one begins.
        let one = vec![vec![7u8; 40]];
        append(&mut wal, 1, &one);
        append(&mut wal, 2, &one);
        append(&mut wal, 3, &one);
        assert_eq!(
            size(),
            PREALLOCATED,
            "appends overwrite, they do not grow the file"
        );
        wal.clear().unwrap();
        assert_eq!(size(), PREALLOCATED);
        drop(wal);
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert!(records.is_empty(), "an emptied log reads as empty");
        append(&mut wal, 4, &one);
        // Write the old records back behind the new one, as they were before opening zeroed
        // them: only the new record is read.
        let mut old = Vec::new();
        let (mut scratch, _) = Wal::open(&dir.path().join("scratch")).unwrap();
        append(&mut scratch, 1, &one);
        append(&mut scratch, 2, &one);
        let record_len = usize::try_from(wal.len()).unwrap();
        old.extend_from_slice(
            &std::fs::read(dir.path().join("scratch")).unwrap()[record_len..2 * record_len],
        );
        wal.file.write_all_at(&old, wal.len()).unwrap();
        drop(wal);
        let (wal, records) = Wal::open(&path).unwrap();
        assert_eq!(
            records,
            [Record {
                first: 4,
                values: one.clone()
            }]
        );
        let bytes = std::fs::read(&path).unwrap();
        let end = usize::try_from(wal.len()).unwrap();
        assert!(
            bytes[end..].iter().all(|&b| b == 0),
            "opening zeroed the rest"
        );
        assert_eq!(bytes.len() as u64, PREALLOCATED);
        drop(wal);
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.release().unwrap();
        assert_eq!(size(), 0, "released");
    }

    #[test]
    fn a_large_batch_grows_the_file_and_emptying_shrinks_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let size = || std::fs::metadata(&path).unwrap().len();
        let (mut wal, _) = Wal::open(&path).unwrap();
        let big = vec![vec![1u8; usize::try_from(3 * PREALLOCATED).unwrap()]];
        append(&mut wal, 1, &big);
        assert!(size() > 2 * PREALLOCATED);
        wal.clear().unwrap();
        assert_eq!(size(), PREALLOCATED);
        drop(wal);
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }

    #[test]
    fn cut_back_takes_an_append_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        append(&mut wal, 1, &values(2));
        let end = wal.len();
        append(&mut wal, 3, &values(2));
        wal.cut_back(end);
        assert_eq!(wal.len(), end);
        drop(wal);
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), PREALLOCATED);
        wal.cut_back(0);
        wal.clear().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            PREALLOCATED,
            "emptying gives a cut-back file its size back"
        );
    }
}
