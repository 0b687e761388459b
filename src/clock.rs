//! Wall-clock timing for statistics that works on every target: on wasm32
//! without WASI, `std::time::Instant::now` panics, so there the clock is
//! absent and every duration reads 0 (the statistics' token counts stay).

/// A started stopwatch.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch {
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    start: std::time::Instant,
}

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Stopwatch {
        Stopwatch {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            start: std::time::Instant::now(),
        }
    }

    /// Seconds since [`Stopwatch::start`] (0 where the target has no clock).
    pub fn secs(&self) -> f64 {
        #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
        return self.start.elapsed().as_secs_f64();
        #[cfg(all(target_family = "wasm", target_os = "unknown"))]
        0.0
    }

    /// Seconds from `self` to `later`.
    pub fn secs_until(&self, later: &Stopwatch) -> f64 {
        #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
        return later.start.duration_since(self.start).as_secs_f64();
        #[cfg(all(target_family = "wasm", target_os = "unknown"))]
        {
            let _ = later;
            0.0
        }
    }
}
