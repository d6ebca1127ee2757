//! nft (under construction).
