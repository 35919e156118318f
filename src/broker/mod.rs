//! The token broker: what grantshift keeps between logins so that the connected app's one Run
//! As user, which every upgraded integration now logs in as, is not asked to log in once per
//! caller ([`cache`]). Shared by the token path, the revoke path and the forwarder (which
//! evicts a token an API call found refused).

pub mod cache;
