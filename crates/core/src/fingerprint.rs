//! The one content fingerprint: FNV-1a over 64-bit words. It binds saved results (an index, a
//! label null, an imported SAE) to the weights or store they came from. Not the `fnv` crate: that
//! hashes bytes, which would change every fingerprint already saved in users' workspaces.

/// FNV-1a over `words`, each folded in whole.
pub fn fnv1a(words: impl IntoIterator<Item = u64>) -> u64 {
    words.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ w).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_word_counts_and_the_empty_input_is_the_offset_basis() {
        assert_eq!(super::fnv1a([]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(super::fnv1a([1, 2]), super::fnv1a([2, 1]));
        assert_ne!(super::fnv1a([0]), super::fnv1a([]));
    }
}
