//! Tests of criu_images, and the image builder the summary's tests use too.

/// Builds image files, for tests here and in the summary: the encoding is
/// the decoding's inverse, through the same unknown-fields API.
pub(crate) mod build {
    use super::super::*;

    /// Starts an empty message to fill with fields.
    pub fn msg() -> Empty {
        Empty::new()
    }

    pub fn varint(m: &mut Empty, n: u32, v: u64) {
        m.special_fields.mut_unknown_fields().add_varint(n, v);
    }

    pub fn bytes(m: &mut Empty, n: u32, b: &[u8]) {
        m.special_fields
            .mut_unknown_fields()
            .add_length_delimited(n, b.to_vec());
    }

    pub fn sub(m: &mut Empty, n: u32, inner: &Empty) {
        bytes(m, n, &inner.write_to_bytes().unwrap());
    }

    /// A whole image file: magics (`head` is None for inventory) and entries.
    pub fn image(head: Option<u32>, magic: u32, entries: &[Empty]) -> Vec<u8> {
        let mut out: Vec<u8> = head
            .into_iter()
            .chain([magic])
            .flat_map(u32::to_le_bytes)
            .collect();
        for e in entries {
            let body = e.write_to_bytes().unwrap();
            out.extend((body.len() as u32).to_le_bytes());
            out.extend(body);
        }
        out
    }
}

mod decode {
    use super::super::*;
    use super::build::*;

    #[test]
    fn entries_round_trip_with_and_without_head_magic() {
        let mut e = msg();
        varint(&mut e, 1, 42);
        bytes(&mut e, 6, b"python3");
        for t in [42, 43] {
            varint(&mut e, 5, t);
        }
        bytes(&mut e, 7, &[0x2c, 0xac, 0x02]); // packed 44, 300
        let mut inner = msg();
        varint(&mut inner, 2, 7);
        sub(&mut e, 3, &inner);
        for head in [Some(IMG_COMMON_MAGIC), None] {
            let img = image(head, PSTREE_MAGIC, &[e.clone(), msg()]);
            let got = decode_image(Path::new("x.img"), &img, PSTREE_MAGIC).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].u32(1, "pid").unwrap(), 42);
            assert_eq!(
                got[0].string(6, "comm").unwrap().as_deref(),
                Some("python3")
            );
            assert_eq!(got[0].repeated_u32(5, "threads").unwrap(), [42, 43]);
            assert_eq!(got[0].repeated_u32(7, "packed").unwrap(), [44, 300]);
            let inner = got[0].message(3, "tc").unwrap().unwrap();
            assert_eq!(inner.varint(2, "x").unwrap(), Some(7));
            assert!(got[1].message(3, "tc").unwrap().is_none());
            let err = got[1].u32(1, "pid").unwrap_err().to_string();
            assert_eq!(err, "x.img: field 1 (pid) is missing");
        }
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let p = Path::new("/d/pstree.img");
        let good = image(Some(IMG_COMMON_MAGIC), PSTREE_MAGIC, &[msg()]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2], "too short"),
            (vec![0; 8], "not a CRIU magic"),
            (
                image(Some(IMG_COMMON_MAGIC), CORE_MAGIC, &[]),
                "expected 0x50273030",
            ),
            (good[..6].to_vec(), "truncated after the head magic"),
            ([&good[..], &[1, 0]].concat(), "truncated entry size"),
            ([&good[..], &[9, 0, 0, 0, 8]].concat(), "past the end"),
            (
                [&good[..], &[2, 0, 0, 0, 0xff, 0xff]].concat(),
                "bad protobuf",
            ),
            ([&good[..8], &[0xff; 4]].concat(), "past the end"),
        ];
        for (bytes, want) in cases {
            let err = decode_image(p, &bytes, PSTREE_MAGIC)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("/d/pstree.img: ") && err.contains(want),
                "{err}"
            );
        }
        let mut e = msg();
        bytes(&mut e, 1, b"x");
        varint(&mut e, 2, u64::MAX);
        let got = decode_image(p, &image(None, PSTREE_MAGIC, &[e]), PSTREE_MAGIC).unwrap();
        assert!(got[0].u32(1, "pid").is_err());
        assert!(got[0].u32(2, "ppid").is_err());
        assert!(got[0].message(2, "tc").is_err());
        assert!(got[0].message(1, "tc").is_err());
        let missing = read_image(Path::new("/nonexistent/x.img"), PSTREE_MAGIC);
        assert!(matches!(missing, Err(Error::Io { .. })));
        let opt = read_optional_image(Path::new("/nonexistent/x.img"), PSTREE_MAGIC);
        assert!(opt.unwrap().is_none());
    }
}
