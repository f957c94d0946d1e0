//! API keys (filled in next).
