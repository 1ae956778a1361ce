//! Moving bytes within one buffer without `memmove`: on a Cortex-M4 the
//! `compiler_builtins` version is 1.5 KB of code, for moves that are short here (the
//! tail of a message past an inserted option, a stored reply slid down its arena, a
//! payload moved behind rewritten options).

/// Copies `buf[src]` to `buf[dest..]`, the ranges possibly overlapping, one byte at a
/// time in the direction that never reads a byte already overwritten. Ranges outside
/// `buf` copy nothing.
pub(crate) fn shift(buf: &mut [u8], src: core::ops::Range<usize>, dest: usize) {
    let len = src.end.saturating_sub(src.start);
    if src.end > buf.len() || dest.saturating_add(len) > buf.len() || dest == src.start {
        return;
    }
    if dest < src.start {
        for i in 0..len {
            buf[dest + i] = buf[src.start + i];
        }
    } else {
        for i in (0..len).rev() {
            buf[dest + i] = buf[src.start + i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shift;

    #[test]
    fn shift_moves_overlapping_ranges_either_way_as_copy_within_does() {
        for len in 0..12 {
            for src in 0..12 - len {
                for dest in 0..=12 - len {
                    let mut a: [u8; 12] = core::array::from_fn(|i| i as u8);
                    let mut b = a;
                    shift(&mut a, src..src + len, dest);
                    b.copy_within(src..src + len, dest);
                    assert_eq!(a, b, "len {len} src {src} dest {dest}");
                }
            }
        }
        // Out of range: nothing moves.
        let mut a = [1u8, 2, 3];
        shift(&mut a, 1..3, 2);
        assert_eq!(a, [1, 2, 3]);
    }
}
