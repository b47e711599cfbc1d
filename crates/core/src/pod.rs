//! Arrays of plain numbers to and from the little-endian bytes of safetensors payloads
//! (bytemuck's casts; a payload need not be aligned, so reading copies).

use bytemuck::Pod;

// The formats saescope reads and writes are little-endian, and so is every target it supports.
#[cfg(target_endian = "big")]
compile_error!("saescope's file formats are little-endian; big-endian targets are not supported");

/// The values in `bytes`, or None when its length is not a whole number of values.
pub fn from_le_bytes<T: Pod>(bytes: &[u8]) -> Option<Vec<T>> {
    bytes
        .len()
        .is_multiple_of(size_of::<T>())
        .then(|| bytemuck::pod_collect_to_vec(bytes))
}

/// The little-endian bytes of `values`.
pub fn to_le_bytes<T: Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_a_partial_value() {
        let v = [1.5f32, -2.0, f32::MAX];
        let b = super::to_le_bytes(&v);
        assert_eq!(b[..4], 1.5f32.to_le_bytes());
        assert_eq!(super::from_le_bytes::<f32>(&b).unwrap(), v);
        // An unaligned view reads the same.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&b);
        assert_eq!(super::from_le_bytes::<f32>(&shifted[1..]).unwrap(), v);
        assert!(super::from_le_bytes::<u64>(&b).is_none());
    }
}
