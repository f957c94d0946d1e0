//! Whole-stack tests, one binary: a real profiles service behind a real
//! gateway (`rapport_e2e::Stack`), called over real sockets with gRPC,
//! gRPC-web and HTTP/1.1 REST clients. Every test binary links sea-orm and
//! sqlx (here through two services), so a new area is a new module here, not
//! a new file under `tests/`.
mod admin_audit;
mod auth;
mod connect;
mod door;
mod jwt;
mod operable;
mod overload;
mod protocols;
mod rolling;
mod traces;
