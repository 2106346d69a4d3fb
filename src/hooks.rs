//! Hooks (`before`, `after`, `on_error`) run on the box or on the backed-up host, and
//! desktop notifications on the backed-up host.
