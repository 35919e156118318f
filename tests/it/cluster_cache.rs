//! The token cache shared by a fleet (`[cluster]`): see docs/operating.md, "Fleet: shared
//! state on Redis".
