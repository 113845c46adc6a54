//! The input side of the `report` command: the first chunk peeked to tell
//! NDJSON (streamed) from one multi-line document (read whole), the file
//! cut into chunks at line ends by a reader thread, batches of chunks
//! taken from it, and the progress bar on a terminal.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::sync::mpsc;

use crate::engine::event;

/// Bytes per chunk handed to a decode job.
pub(super) const CHUNK: usize = 1 << 20;

/// A progress bar on stderr for a file big enough to wait for (over 64
/// chunks), when stderr is a terminal; `None` otherwise.
pub(super) fn progress_bar(size: u64) -> Option<indicatif::ProgressBar> {
    let progress = std::io::stderr().is_terminal() && size > 64 * CHUNK as u64;
    progress.then(|| {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template"),
        );
        b
    })
}

/// Reads the first chunk and tells whether the file can be streamed: a
/// full chunk whose first non-blank line is a whole JSON value (NDJSON).
/// Anything else (a small file, or the start of one multi-line document)
/// is read whole by the caller, after these bytes.
pub(super) fn peek(file: &mut File) -> std::io::Result<(Vec<u8>, bool)> {
    let mut first = Vec::with_capacity(CHUNK);
    let n = read_chunk(file, &mut first)?;
    // SPEC §2: a UTF-8 byte-order mark at the start of the file is ignored.
    if first.starts_with(event::BOM) {
        first.drain(..event::BOM.len());
    }
    let first_line = event::lines(&first)
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(&[]);
    let streaming = n == CHUNK && event::is_complete_doc(first_line);
    Ok((first, streaming))
}

/// Up to `n` chunks, waiting for each; `None` once the file is all read.
pub(super) fn next_batch(rx: &mpsc::Receiver<Vec<u8>>, n: usize) -> Option<Vec<Vec<u8>>> {
    let mut batch = Vec::with_capacity(n);
    while batch.len() < n {
        match rx.recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
    (!batch.is_empty()).then_some(batch)
}

/// Appends up to [`CHUNK`] bytes of `f` to `buf` (fewer only at the end
/// of the file), read into its spare capacity: neither zeroed first nor
/// copied after. Returns how many.
fn read_chunk(f: &mut File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    f.take(CHUNK as u64).read_to_end(buf)
}

/// Sends the file in chunks that end at a line end, each read landing
/// straight after the tail the last chunk carried over.
pub(super) fn feed_chunks(
    file: &mut File,
    mut carry: Vec<u8>,
    tx: &mpsc::SyncSender<Vec<u8>>,
    bar: Option<&indicatif::ProgressBar>,
) -> std::io::Result<()> {
    if let Some(b) = bar {
        b.inc(carry.len() as u64);
    }
    loop {
        let mut buf = Vec::with_capacity(carry.len() + CHUNK);
        buf.extend_from_slice(&carry);
        let start = buf.len();
        let n = read_chunk(file, &mut buf)?;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
        if n == 0 {
            if !buf.is_empty() {
                let _ = tx.send(buf);
            }
            return Ok(());
        }
        // Cut at the last newline; the tail moves on. (The carried tail
        // holds none: a line longer than a chunk is carried on whole.)
        match buf[start..].iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                carry = buf[start + i + 1..].to_vec();
                buf.truncate(start + i + 1);
                let _ = tx.send(buf);
            }
            None => carry = buf,
        }
    }
}
