//! A logger for the examples' `-v N` (libcoap's verbosity levels): 6 and more print
//! every message sent and received, 5 retransmissions, give-ups, duplicates and
//! refusals; one line each on stderr.

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("coap_proto")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{:<5} {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the logger for libcoap verbosity `level` (0–9).
pub fn init(level: u8) {
    let filter = match level {
        0..=4 => log::LevelFilter::Off,
        5 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(filter);
    }
}
