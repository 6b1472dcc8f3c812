//! The two slots of an A/B component: a file slot pair, or an MCU's flash slots. Journals,
//! pointer files, inventories and commands' environment spell them `a` and `b`.

use serde::{Deserialize, Serialize};

/// Slot A or slot B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// The first slot (`a`; index 0).
    #[serde(rename = "a", alias = "A")]
    A,
    /// The second slot (`b`; index 1).
    #[serde(rename = "b", alias = "B")]
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const BOTH: [Self; 2] = [Self::A, Self::B];

    /// `a` or `b`.
    pub fn name(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }

    /// Parses `a` or `b` (either case).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "a" | "A" => Some(Self::A),
            "b" | "B" => Some(Self::B),
            _ => None,
        }
    }

    /// 0 for A, 1 for B: the position in a component's `slots` list.
    pub fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }

    /// The slot at position `i` of a component's `slots` list.
    pub fn from_index(i: usize) -> Option<Self> {
        match i {
            0 => Some(Self::A),
            1 => Some(Self::B),
            _ => None,
        }
    }

    /// The other slot.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

impl core::fmt::Display for Slot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<suitcase_boot::Slot> for Slot {
    fn from(s: suitcase_boot::Slot) -> Self {
        match s {
            suitcase_boot::Slot::A => Self::A,
            suitcase_boot::Slot::B => Self::B,
        }
    }
}

impl From<Slot> for suitcase_boot::Slot {
    fn from(s: Slot) -> Self {
        match s {
            Slot::A => Self::A,
            Slot::B => Self::B,
        }
    }
}
