//! Fuzzing on the stable toolchain (issue 9, item 7): the manifest parser, which reads bytes a
//! peer sends (`manifest_data`) and bytes on disk (resume files), fed random bytes and
//! mutations of real manifests. `PROPTEST_CASES` cases per property (256 by default); a
//! longer run by hand:
//! `PROPTEST_CASES=200000 cargo test --release -p shoal-storage --test fuzz_manifest`.
//!
//! Properties: parsing never panics; what parses is canonical (its bytes are exactly the
//! input, so one content has one info hash); a mutated manifest never verifies against the
//! original info hash.

use proptest::prelude::*;
use shoal_storage::{Layout, Manifest, ManifestError, sha256};

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        0u64..2_000_000,
        prop_oneof![Just(16_384u32), Just(262_144), 4_096u32..100_000],
        any::<u8>(),
    )
        .prop_map(|(len, piece_len, fill)| {
            let layout = Layout::new(len, piece_len).expect("layout");
            let hashes = (0..layout.piece_count())
                .map(|i| sha256(&[fill, i as u8, (i >> 8) as u8]))
                .collect();
            Manifest::new(layout, hashes).expect("manifest")
        })
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(parsed) = Manifest::from_bytes(bytes) {
        prop_assert_eq!(parsed.to_bytes(), bytes.to_vec());
        prop_assert_eq!(*parsed.info_hash().as_bytes(), sha256(bytes));
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_bytes_parse_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&bytes)?;
        // With the magic in front, the length fields are what is fuzzed.
        let mut framed = b"SHOALMF1".to_vec();
        framed.extend_from_slice(&bytes);
        check(&framed)?;
    }

    #[test]
    fn real_manifests_round_trip(m in manifest()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(Manifest::from_bytes_verified(&bytes, m.info_hash()), Ok(m));
    }

    #[test]
    fn mutated_manifests_never_verify(
        m in manifest(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..3),
        cut in any::<usize>(),
        extra in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let original = m.to_bytes();
        let mut bytes = original.clone();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] ^= value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if cut % 3 == 0 {
            bytes.extend_from_slice(&extra);
        }
        check(&bytes)?;
        let verified = Manifest::from_bytes_verified(&bytes, m.info_hash());
        if bytes == original {
            prop_assert!(verified.is_ok());
        } else {
            prop_assert!(
                matches!(verified, Err(ManifestError::InfoHashMismatch { .. })),
                "{:?}",
                verified
            );
        }
    }
}
