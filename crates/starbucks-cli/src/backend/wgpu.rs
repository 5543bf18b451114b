//! wgpu devices by index over every adapter the machine has: discrete GPUs first, then
//! integrated, virtual and CPU adapters (a software driver such as Mesa's lavapipe is one).
//! cubecl names an adapter by its type and its rank among adapters of that type, in the order
//! the graphics API lists them; this module maps our one index to that name.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::backend::wgpu::WgpuDevice;
use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
use wgpu::DeviceType;

/// The order adapters are numbered in, by type (wgpu's `Other` adapters are left out: cubecl
/// opens one only as a fallback when a type has too few).
const ORDER: [DeviceType; 4] =
    [DeviceType::DiscreteGpu, DeviceType::IntegratedGpu, DeviceType::VirtualGpu, DeviceType::Cpu];

/// One adapter as `device_at` numbers it.
struct Adapter {
    name: String,
    device_type: DeviceType,
    driver: String,
    /// Its rank among the adapters of its type, in the API's order.
    rank: usize,
}

/// wgpu's native adapter listing completes at once; polled to the end without an executor.
fn block_on<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
        std::thread::yield_now();
    }
}

/// The adapters of the graphics API cubecl uses (Vulkan on Linux), in our order.
fn adapters() -> Vec<Adapter> {
    let backend = AutoGraphicsApi::backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let listed: Vec<wgpu::AdapterInfo> =
        block_on(instance.enumerate_adapters(backend.into())).iter().map(|a| a.get_info()).collect();
    let mut ordered = Vec::new();
    for device_type in ORDER {
        let of_type = listed.iter().filter(|info| info.device_type == device_type);
        for (rank, info) in of_type.enumerate() {
            let driver = format!("{} {}", info.driver, info.driver_info).trim().to_string();
            ordered.push(Adapter { name: info.name.clone(), device_type, driver, rank });
        }
    }
    ordered
}

/// The `index`-th adapter in the order above; an index with no adapter is an error that says
/// how many there are.
pub fn device_at(index: usize) -> Result<WgpuDevice, String> {
    let adapters = adapters();
    let Some(adapter) = adapters.get(index) else {
        if adapters.is_empty() {
            return Err(format!(
                "wgpu device {index}: the machine has no {:?} adapter (a machine without a GPU needs a \
                 software driver, such as Debian's mesa-vulkan-drivers)",
                AutoGraphicsApi::backend()
            ));
        }
        let listed: Vec<String> =
            adapters.iter().enumerate().map(|(i, a)| format!("{i}: {} ({:?})", a.name, a.device_type)).collect();
        return Err(format!(
            "wgpu device {index}: the machine has {} adapter(s): {}",
            adapters.len(),
            listed.join(", ")
        ));
    };
    let device = match adapter.device_type {
        DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(adapter.rank),
        DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(adapter.rank),
        DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(adapter.rank),
        // cubecl reaches only the first CPU adapter.
        DeviceType::Cpu if adapter.rank == 0 => WgpuDevice::Cpu,
        DeviceType::Cpu => return Err(format!("wgpu device {index}: cubecl can use only the first CPU adapter")),
        DeviceType::Other => unreachable!("not in ORDER"),
    };
    tracing::info!(index, adapter = %adapter.name, kind = ?adapter.device_type, driver = %adapter.driver, "wgpu device");
    Ok(device)
}
