//! CUDA devices by CUDA's own numbering, checked against the driver before cubecl sees them
//! (cubecl panics on a missing library or device).

use burn::backend::cuda::CudaDevice;
use cudarc::driver::result;

/// GPU `index`; a machine without the driver library, or with fewer GPUs, is an error that
/// says which.
pub fn device_at(index: usize) -> Result<CudaDevice, String> {
    // SAFETY: only tries to open the driver library by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(format!(
            "cuda device {index}: the CUDA driver library was not found (tried {}; LD_LIBRARY_PATH={})",
            cudarc::get_lib_name_candidates("cuda").join(", "),
            std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
        ));
    }
    result::init().map_err(|e| format!("cuda device {index}: the driver did not start: {e}"))?;
    let count = result::device::get_count().map_err(|e| format!("cuda device {index}: {e}"))? as usize;
    if index >= count {
        return Err(format!("cuda device {index}: the machine has {count} CUDA device(s)"));
    }
    let device = result::device::get(index as i32).map_err(|e| format!("cuda device {index}: {e}"))?;
    let name = result::device::get_name(device).unwrap_or_else(|e| format!("(name unknown: {e})"));
    tracing::info!(index, name = %name, "cuda device");
    Ok(CudaDevice::new(index))
}
