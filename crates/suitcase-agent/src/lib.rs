//! The device agent (work in progress; see issue 6).
