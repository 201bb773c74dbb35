//! The CRI log format, as containerd writes a container's stdout/stderr:
//! one line per write or line, `<RFC3339Nano time> <stream> <tags> <message>`,
//! where the first tag is `P` (partial: the line goes on in the next
//! record) or `F` (full: this record ends the line). Kubernetes' kubelet
//! reads it the same way (pkg/kubelet/kuberuntime/logs).

use std::collections::HashMap;

/// Which of the container's outputs a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One parsed record; `message` has no trailing newline.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a [u8],
    pub stream: Stream,
    pub partial: bool,
    pub message: &'a [u8],
}

/// Parses one record (without its '\n'). A line that does not follow the
/// format is an error saying why, never a panic.
pub fn parse_record(line: &[u8]) -> Result<Record<'_>, String> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = fields.next().unwrap_or_default();
    if time.is_empty() || !time.first().is_some_and(u8::is_ascii_digit) {
        return Err("no timestamp at the start".to_owned());
    }
    let stream = match fields.next() {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        Some(other) => {
            return Err(format!(
                "stream {:?} is neither stdout nor stderr",
                String::from_utf8_lossy(other)
            ))
        }
        None => return Err("no stream after the timestamp".to_owned()),
    };
    // Further tags after a ':' are allowed (forward compatibility, as in
    // the kubelet); the first decides.
    let partial = match fields.next().map(|tags| tags.split(|&b| b == b':').next()) {
        Some(Some(b"P")) => true,
        Some(Some(b"F")) => false,
        Some(_) => return Err("the tag is neither P nor F".to_owned()),
        None => return Err("no P/F tag after the stream".to_owned()),
    };
    // A full record of an empty line may come without the space before it.
    let message = fields.next().unwrap_or_default();
    Ok(Record {
        time,
        stream,
        partial,
        message,
    })
}

/// What a log file holds once partial records are joined.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lines {
    /// Complete lines in file order, each with its stream.
    pub lines: Vec<(Stream, Vec<u8>)>,
    /// Records that could not be parsed: 1-based line number and why.
    pub bad: Vec<(usize, String)>,
}

/// Joins each stream's `P` records with the `F` record that ends them (the
/// two streams are joined separately: their records may interleave). A
/// line still partial at the end of the file (the container is writing
/// it) is kept as it stands.
pub fn join(content: &[u8]) -> Lines {
    let mut out = Lines::default();
    let mut pending: HashMap<Stream, Vec<u8>> = HashMap::new();
    let mut order: Vec<Stream> = Vec::new();
    for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
        if raw.is_empty() {
            continue; // the split after the final '\n'
        }
        match parse_record(raw) {
            Err(why) => out.bad.push((index + 1, why)),
            Ok(record) => {
                let buffer = pending.entry(record.stream).or_insert_with(|| {
                    order.push(record.stream);
                    Vec::new()
                });
                buffer.extend_from_slice(record.message);
                if !record.partial {
                    out.lines.push((record.stream, std::mem::take(buffer)));
                    pending.remove(&record.stream);
                    order.retain(|s| *s != record.stream);
                }
            }
        }
    }
    for stream in order {
        if let Some(rest) = pending.remove(&stream) {
            out.lines.push((stream, rest));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-11-26T10:00:00.123456789Z";

    #[test]
    fn parses_a_full_record() {
        let line = format!("{T} stdout F tick-1 and more");
        let record = parse_record(line.as_bytes()).unwrap();
        assert_eq!(record.time, T.as_bytes());
        assert_eq!(record.stream, Stream::Stdout);
        assert!(!record.partial);
        assert_eq!(record.message, b"tick-1 and more");
    }

    #[test]
    fn an_empty_line_with_or_without_its_space() {
        assert_eq!(
            parse_record(format!("{T} stderr F ").as_bytes())
                .unwrap()
                .message,
            b""
        );
        assert_eq!(
            parse_record(format!("{T} stderr F").as_bytes())
                .unwrap()
                .message,
            b""
        );
    }

    #[test]
    fn partial_records_are_joined_per_stream() {
        let log = format!(
            "{T} stdout P tick-\n{T} stderr P oh \n{T} stdout F 41\n{T} stderr F no\n{T} stdout F tick-42\n"
        );
        let joined = join(log.as_bytes());
        assert!(joined.bad.is_empty(), "{:?}", joined.bad);
        assert_eq!(
            joined.lines,
            vec![
                (Stream::Stdout, b"tick-41".to_vec()),
                (Stream::Stderr, b"oh no".to_vec()),
                (Stream::Stdout, b"tick-42".to_vec()),
            ]
        );
    }

    #[test]
    fn a_trailing_partial_line_is_kept() {
        let joined = join(format!("{T} stdout F a\n{T} stdout P b").as_bytes());
        assert_eq!(
            joined.lines,
            vec![
                (Stream::Stdout, b"a".to_vec()),
                (Stream::Stdout, b"b".to_vec())
            ]
        );
    }

    #[test]
    fn bad_records_are_reported_with_their_line_number() {
        let log = format!("garbage\n{T} stdin F x\n{T} stdout X y\n{T}\n{T} stdout F ok\n");
        let joined = join(log.as_bytes());
        assert_eq!(joined.lines, vec![(Stream::Stdout, b"ok".to_vec())]);
        let numbers: Vec<usize> = joined.bad.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![1, 2, 3, 4]);
        assert!(joined.bad[1].1.contains("stdin"), "{:?}", joined.bad[1]);
        assert!(joined.bad[2].1.contains("P nor F"), "{:?}", joined.bad[2]);
    }

    #[test]
    fn extra_tags_after_a_colon_are_ignored() {
        let line = format!("{T} stdout P:x y");
        let record = parse_record(line.as_bytes()).unwrap();
        assert!(record.partial);
        assert_eq!(record.message, b"y");
    }
}
