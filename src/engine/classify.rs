//! Classification of one event (SPEC §3): status class, throttling, success
//! or failure, and who caused a failure. Pure functions, no state.

use serde::{Deserialize, Serialize};

/// The sovereign cloud that served a request. `all` is a scope, not a cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    Public,
    Gcc,
    GccHigh,
    Dod,
    AzureGovernment,
    Mooncake,
}

impl Cloud {
    pub const ALL: [Cloud; 6] = [
        Cloud::Public,
        Cloud::Gcc,
        Cloud::GccHigh,
        Cloud::Dod,
        Cloud::AzureGovernment,
        Cloud::Mooncake,
    ];
    pub fn parse(s: &str) -> Option<Cloud> {
        Some(match s {
            "public" => Cloud::Public,
            "gcc" => Cloud::Gcc,
            "gcc-high" => Cloud::GccHigh,
            "dod" => Cloud::Dod,
            "azure-government" => Cloud::AzureGovernment,
            "mooncake" => Cloud::Mooncake,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc-high",
            Cloud::Dod => "dod",
            Cloud::AzureGovernment => "azure-government",
            Cloud::Mooncake => "mooncake",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Who caused a failed request, as the event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    Connector,
    Backend,
    Client,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::Connector, Fault::Backend, Fault::Client];
    pub fn parse(s: &str) -> Option<Fault> {
        Some(match s {
            "connector" => Fault::Connector,
            "backend" => Fault::Backend,
            "client" => Fault::Client,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Connector => "connector",
            Fault::Backend => "backend",
            Fault::Client => "client",
        }
    }
}

/// The status class label: `1xx` .. `5xx`, or `none` for no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    C1xx,
    C2xx,
    C3xx,
    C4xx,
    C5xx,
    None,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::C1xx,
        Class::C2xx,
        Class::C3xx,
        Class::C4xx,
        Class::C5xx,
        Class::None,
    ];
    pub fn of(status: Option<u16>) -> Class {
        match status {
            Some(100..=199) => Class::C1xx,
            Some(200..=299) => Class::C2xx,
            Some(300..=399) => Class::C3xx,
            Some(400..=499) => Class::C4xx,
            Some(_) => Class::C5xx,
            None => Class::None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Class::C1xx => "1xx",
            Class::C2xx => "2xx",
            Class::C3xx => "3xx",
            Class::C4xx => "4xx",
            Class::C5xx => "5xx",
            Class::None => "none",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What one event counts as in every ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Status 429: counted, and excluded from every ratio.
    Throttled,
    Success,
    Failure(Fault),
}

/// Classifies one event. `unattributed` is the configured origin of a 5xx or
/// no-response failure that carries no `fault` (SPEC §3).
pub fn outcome(status: Option<u16>, fault: Option<Fault>, unattributed: Fault) -> Outcome {
    match status {
        Some(429) => Outcome::Throttled,
        Some(100..=399) => Outcome::Success,
        Some(400..=499) => Outcome::Failure(fault.unwrap_or(Fault::Client)),
        _ => Outcome::Failure(fault.unwrap_or(unattributed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let cases = [
            (Some(100), Class::C1xx),
            (Some(199), Class::C1xx),
            (Some(200), Class::C2xx),
            (Some(302), Class::C3xx),
            (Some(404), Class::C4xx),
            (Some(429), Class::C4xx),
            (Some(500), Class::C5xx),
            (Some(599), Class::C5xx),
            (None, Class::None),
        ];
        for (s, c) in cases {
            assert_eq!(Class::of(s), c, "{s:?}");
        }
    }

    #[test]
    fn outcomes_and_origins() {
        use Fault::*;
        let u = Connector;
        let cases = [
            (Some(200), None, Outcome::Success),
            (Some(200), Some(Backend), Outcome::Success), // fault ignored on success
            (Some(101), None, Outcome::Success),
            (Some(399), None, Outcome::Success),
            (Some(429), Some(Connector), Outcome::Throttled), // fault ignored when throttled
            (Some(404), None, Outcome::Failure(Client)),
            (Some(404), Some(Connector), Outcome::Failure(Connector)),
            (Some(500), None, Outcome::Failure(Connector)),
            (Some(503), Some(Backend), Outcome::Failure(Backend)),
            (None, None, Outcome::Failure(Connector)),
            (None, Some(Client), Outcome::Failure(Client)),
        ];
        for (s, f, want) in cases {
            assert_eq!(outcome(s, f, u), want, "{s:?} {f:?}");
        }
        // The configured origin applies to 5xx and no response, never to 4xx.
        assert_eq!(outcome(Some(500), None, Backend), Outcome::Failure(Backend));
        assert_eq!(outcome(None, None, Backend), Outcome::Failure(Backend));
        assert_eq!(outcome(Some(400), None, Backend), Outcome::Failure(Client));
    }
}
