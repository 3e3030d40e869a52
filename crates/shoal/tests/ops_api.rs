//! End-to-end tests of the Operations API (placeholder).
