//! A delivery's status: it only moves forward, whatever order the provider's callbacks arrive
//! in (Twilio documents that they may come out of order; SendGrid's come in batches).
//!
//! `pending → queued → sent → delivered | failed | bounced`, with `suppressed` and `skipped`
//! decided before anything is sent. A late `bounced` overrides `delivered` (an e-mail accepted
//! by the receiving server can still bounce); nothing else leaves a final status.

use serde::{Deserialize, Serialize};

/// Where one delivery (one channel of a notification) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created, not yet handed to the queue (deferred by quiet hours, a digest or send-at).
    Pending,
    /// Its delivery job is on the queue.
    Queued,
    /// A provider accepted it.
    Sent,
    /// The provider reports it reached the recipient.
    Delivered,
    /// It could not be sent or delivered.
    Failed,
    /// The recipient's server refused it (hard bounce) or the recipient complained.
    Bounced,
    /// The address or device is on the suppression list: nothing sent.
    Suppressed,
    /// Not sent by the recipient's preferences or a missing contact (the reason is stored).
    Skipped,
}

impl Status {
    /// Order along the way; final statuses share the last step.
    fn step(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Queued => 1,
            Status::Sent => 2,
            Status::Delivered
            | Status::Failed
            | Status::Bounced
            | Status::Suppressed
            | Status::Skipped => 3,
        }
    }

    /// Whether nothing more will happen to it (except a late bounce of a delivered e-mail).
    pub fn is_final(self) -> bool {
        self.step() == 3
    }

    /// The status after `event` arrives, or `None` when `event` would move it backwards or
    /// sideways (the event is recorded in the timeline but the status stays).
    pub fn advance(self, event: Status) -> Option<Status> {
        let allowed = match (self, event) {
            (Status::Delivered, Status::Bounced) => true,
            // Suppression and skipping are decided before sending, never after.
            (from, Status::Suppressed | Status::Skipped) => from.step() < 2,
            (from, to) => to.step() > from.step(),
        };
        allowed.then_some(event)
    }

    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Bounced => "bounced",
            Status::Suppressed => "suppressed",
            Status::Skipped => "skipped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    const ALL: [Status; 8] = [
        Pending, Queued, Sent, Delivered, Failed, Bounced, Suppressed, Skipped,
    ];

    #[test]
    fn the_happy_path_moves_forward() {
        assert_eq!(Pending.advance(Queued), Some(Queued));
        assert_eq!(Queued.advance(Sent), Some(Sent));
        assert_eq!(Sent.advance(Delivered), Some(Delivered));
        assert_eq!(Sent.advance(Bounced), Some(Bounced));
    }

    #[test]
    fn out_of_order_callbacks_never_regress() {
        // "delivered" arrives before "sent": the later "sent" changes nothing.
        assert_eq!(Queued.advance(Delivered), Some(Delivered));
        assert_eq!(Delivered.advance(Sent), None);
        assert_eq!(Delivered.advance(Queued), None);
        assert_eq!(Failed.advance(Delivered), None);
        assert_eq!(Failed.advance(Sent), None);
        for s in ALL {
            assert_eq!(s.advance(s), None, "{s:?} to itself");
            assert_eq!(s.advance(Pending), None, "{s:?} back to pending");
        }
    }

    #[test]
    fn a_late_bounce_overrides_delivered_only() {
        assert_eq!(Delivered.advance(Bounced), Some(Bounced));
        assert_eq!(Bounced.advance(Delivered), None);
        assert_eq!(Failed.advance(Bounced), None);
    }

    #[test]
    fn suppression_and_skipping_happen_before_sending() {
        assert_eq!(Pending.advance(Suppressed), Some(Suppressed));
        assert_eq!(Queued.advance(Skipped), Some(Skipped));
        assert_eq!(Sent.advance(Suppressed), None);
        assert_eq!(Delivered.advance(Skipped), None);
        assert!(ALL.iter().filter(|s| s.is_final()).count() == 5);
    }

    #[test]
    fn names_round_trip_through_serde() {
        for s in ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
        }
    }
}
