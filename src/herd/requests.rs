//! Requests by id: a message sent with an id, answered by the reply that carries it back.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wsherd_protocol::{DecodeError, EncodeError, MessageId, Outbound};
use wsherd_supervisor::{Answer, Requests, Submit, Supervisor};

use super::Herd;
use crate::error::{RequestError, SendError};

/// What a request's waiter hears, decoded on the connection's thread.
enum Outcome<R> {
    Reply(R),
    Decode(DecodeError),
    Disconnected,
    Stopped,
}

impl Herd {
    /// Sends `message` (a JSON object) to endpoint `name` with an id, and returns its reply
    /// decoded as `R`: the message whose id field (`request.reply_id_field`, by default the
    /// same as `request.id_field`, `"id"`) holds the same integer or string.
    ///
    /// The id is the endpoint's next number unless `message` carries its own at the id field
    /// (a string or an integer; one still waiting is refused). The message goes through the
    /// endpoint's queue like any send: a request made while the endpoint is down goes out
    /// after its next open. It fails with [`RequestError::Disconnected`] when the socket it
    /// was written on ends before the reply (unless `request.resend_on_reconnect`), and
    /// [`RequestError::Timeout`] after `timeout`. At most `request.max_in_flight` requests
    /// wait per endpoint. The reply also reaches subscribers unless `request.route_replies`
    /// is `false`.
    ///
    /// A reply is the one proof that the peer received a message: `docs/guarantees.md`.
    ///
    /// ```no_run
    /// # async fn demo(herd: wsherd::Herd) -> Result<(), wsherd::RequestError> {
    /// #[derive(serde::Deserialize)]
    /// struct Ack { result: String }
    /// let ack: Ack = herd
    ///     .request("exchange", serde_json::json!({"op": "subscribe", "channel": "trades"}),
    ///         std::time::Duration::from_secs(5))
    ///     .await?;
    /// println!("{}", ack.result);
    /// # Ok(()) }
    /// ```
    pub async fn request<R: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        message: impl Serialize,
        timeout: Duration,
    ) -> Result<R, RequestError> {
        self.request_with_id(name, message, timeout)
            .await
            .map(|(_, reply)| reply)
    }

    /// [`Herd::request`], and the id the request was sent with.
    pub async fn request_with_id<R: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        message: impl Serialize,
        timeout: Duration,
    ) -> Result<(MessageId, R), RequestError> {
        let value = serde_json::to_value(&message).map_err(|error| EncodeError {
            type_name: std::any::type_name_of_val(&message),
            reason: error.to_string(),
        })?;
        let Some((supervisor, requests)) = self.requests_of(name) else {
            return Err(RequestError::Rejected(SendError::UnknownEndpoint {
                name: name.to_owned(),
                message: Outbound::Text(value.to_string()),
            }));
        };
        let (answer, answered) = tokio::sync::oneshot::channel::<Outcome<R>>();
        let (id, text) = requests
            .register(value, move |heard| {
                let outcome = match heard {
                    Answer::Reply(text) => match wsherd_protocol::decode::<R>("reply", text) {
                        Ok(reply) => Outcome::Reply(reply),
                        Err(error) => Outcome::Decode(error),
                    },
                    Answer::Disconnected => Outcome::Disconnected,
                    Answer::Stopped => Outcome::Stopped,
                };
                // The caller may have given up meanwhile: nobody to tell.
                let _ = answer.send(outcome);
            })
            .map_err(RequestError::Refused)?;
        // A caller that stops waiting (its future dropped) gives its slot back.
        let mut waiting = Waiting {
            requests: &requests,
            id: Some(id.clone()),
        };
        match supervisor
            .send(Submit(Outbound::Text(text.to_string())))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(rejected)) => {
                return Err(RequestError::Rejected(SendError::Rejected(rejected)));
            }
            Err(_) => return Err(RequestError::Stopped { id }),
        }
        let mut answered = std::pin::pin!(answered);
        let outcome = match tokio::time::timeout(timeout, &mut answered).await {
            Ok(outcome) => outcome,
            // Still waiting: forgotten. Answered in the meantime: the answer is on its way.
            Err(_) if waiting.give_up() => {
                return Err(RequestError::Timeout { id, timeout });
            }
            Err(_) => answered.await,
        };
        // Answered: nothing left to forget.
        waiting.id = None;
        match outcome {
            Ok(Outcome::Reply(reply)) => Ok((id, reply)),
            Ok(Outcome::Decode(error)) => Err(RequestError::Decode { id, error }),
            Ok(Outcome::Disconnected) => Err(RequestError::Disconnected { id }),
            Ok(Outcome::Stopped) | Err(_) => Err(RequestError::Stopped { id }),
        }
    }

    /// Endpoint `name`'s supervisor and requests.
    fn requests_of(&self, name: &str) -> Option<(actix::Addr<Supervisor>, Arc<Requests>)> {
        self.lock().by_name.get(name).map(|endpoint| {
            (
                endpoint.supervisor.clone(),
                Arc::clone(endpoint.shared.requests()),
            )
        })
    }
}

/// Forgets its request when dropped before the request was answered or given up.
struct Waiting<'r> {
    requests: &'r Requests,
    id: Option<MessageId>,
}

impl Waiting<'_> {
    /// The caller's timeout: forgotten now; `false` when it was answered meanwhile.
    fn give_up(&mut self) -> bool {
        self.id
            .take()
            .is_some_and(|id| self.requests.forget(&id, true))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.requests.forget(&id, false);
        }
    }
}

impl RequestError {
    /// The request's id, when it was given one.
    pub fn id(&self) -> Option<&MessageId> {
        match self {
            RequestError::Timeout { id, .. }
            | RequestError::Disconnected { id }
            | RequestError::Stopped { id }
            | RequestError::Decode { id, .. } => Some(id),
            _ => None,
        }
    }
}
