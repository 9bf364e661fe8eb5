//! The Unix-socket front-end: identifies each connection, decodes requests, calls the service
//! and encodes its answers. Knows nothing about how keys are stored.

use crate::access::{Groups, Principal};
use crate::error::KmsError;
use crate::meters::{DECRYPT, OperationMeter};
use crate::service::{BindingUpdate, Caller, KeyMetaSpec, KeySpec, Kms, Page};
use crate::wire;
use lockbox_proto::hello::Service;
use lockbox_proto::kms::{DecryptCall, DecryptedRef, KmsRequest, KmsResponse};
use lockbox_proto::{Error, SecretBytes, variant};
use lockbox_rpc::metrics::{Metrics, RequestMeter};
use lockbox_rpc::peer::{self, LocalIdentity, PeerCred};
use lockbox_rpc::server::{AnswerError, Handler, Next, decode_request, respond};
use std::sync::Arc;

// The wire's promise and the service's cap are one number.
const _: () =
    assert!(lockbox_proto::kms::MAX_KEYSTORE_CHUNK as usize == crate::service::MAX_KEYSTORE_CHUNK);

/// Serves a [`Kms`] over the lockbox protocol.
#[derive(Debug)]
pub struct KmsHandler {
    /// The service.
    kms: Arc<Kms>,
    /// Largest frame sent.
    max_frame: u32,
    /// Request series, when metrics are on.
    meter: Option<RequestMeter>,
    /// Operations by key and relayed decisions, when metrics are on.
    operations: Option<OperationMeter>,
}

impl KmsHandler {
    /// A handler for `kms`, keeping request series in `metrics` (if on).
    pub fn new(kms: Arc<Kms>, max_frame: u32, metrics: &Metrics) -> Self {
        let meter = RequestMeter::new(metrics, "lockbox_kms", variant::names::<KmsRequest>(), None);
        Self {
            kms,
            max_frame,
            meter,
            operations: OperationMeter::new(metrics),
        }
    }
}

/// A connected peer.
#[derive(Debug)]
pub struct Session {
    /// Who the kernel says is connected.
    identity: LocalIdentity,
    /// Whether that subject was enrolled as a relay when it connected.
    relay: bool,
}

impl Handler for KmsHandler {
    type Session = Session;

    fn service(&self) -> Service {
        Service::Kms
    }

    fn open(&self, cred: PeerCred) -> Result<Session, Error> {
        let identity = peer::resolve(&cred);
        let relay = self.kms.is_relay(&identity.subject);
        tracing::debug!(subject = %identity.subject, pid = ?cred.pid, relay, "connection opened");
        Ok(Session { identity, relay })
    }

    fn subject(&self, session: &Session) -> String {
        session.identity.subject.clone()
    }

    fn now(&self) -> i64 {
        self.kms.now()
    }

    fn meter(&self) -> Option<&RequestMeter> {
        self.meter.as_ref()
    }

    async fn call(&self, session: &Session, body: &[u8], out: &mut Vec<u8>) -> Next {
        // A relay's decrypt, once per read of a secret with its own key, is read in place.
        if let Some(call) = DecryptCall::parse(body) {
            self.decrypt(session, call, out);
            return Next::Continue;
        }
        let request = match decode_request::<KmsRequest>(body) {
            Ok(r) => r,
            Err((id, e)) => {
                respond::<()>(out, id, Err(e), self.max_frame);
                return Next::Continue;
            }
        };
        let relayed = request.on_behalf_of.as_ref().map(|p| Principal {
            subject: &p.subject,
            groups: Groups::Owned(&p.groups),
        });
        // A relayed request leaves its decisions in the trail; a direct change or
        // cryptographic operation leaves a line of its own, with its outcome.
        let audited = match relayed {
            None => audited_resource(&request.body),
            Some(_) => None,
        };
        let result = match caller(session, relayed) {
            Ok(caller) if caller.relay.is_some() && !relayable(&request.body) => {
                Err(KmsError::NotRelayable(request_name(body)))
            }
            Ok(_)
                if audited.is_some()
                    && let Err(e) = crate::audit::admit() =>
            {
                Err(KmsError::Unavailable(e.to_string()))
            }
            Ok(caller) => {
                let measured = self.operations.as_ref().and_then(|meter| {
                    crate::meters::operation(&request.body)
                        .map(|(op, key)| (meter, op, key.to_owned()))
                });
                let answered = match dispatch(&self.kms, &caller, request.body).await {
                    Ok(answer) if session.relay => {
                        self.hold(&session.identity.subject, answer).await
                    }
                    answered => answered,
                };
                if let Some(resource) = &audited {
                    record_request(session, request_name(body), resource, &answered);
                }
                if let Some((meter, op, key)) = measured {
                    meter.operation(
                        &self.kms,
                        op,
                        &key,
                        answered.as_ref().err().map(|e| e.code()),
                    );
                }
                answered
            }
            Err(e) => Err(e),
        };
        if let (Some(meter), Some(_)) = (&self.operations, &relayed) {
            meter.decision(result.as_ref().err().map(|e| e.code()));
        }
        respond(
            out,
            request.id,
            result.map_err(|e| e.answer()),
            self.max_frame,
        );
        Next::Continue
    }
}

/// The name of the request a frame body carries, for messages.
fn request_name(body: &[u8]) -> &'static str {
    // A request is its id, the relayed principal and the body, whose first field is the
    // variant's tag.
    postcard::take_from_bytes::<(u64, Option<lockbox_proto::Principal>, u32)>(body)
        .ok()
        .and_then(|((_, _, tag), _)| {
            lockbox_proto::variant::names::<KmsRequest>()
                .get(tag as usize)
                .copied()
        })
        .unwrap_or("this request")
}

/// Whether a relay may send `request` on behalf of another subject: only the cryptographic
/// operations a secrets daemon performs for its callers, and the check it makes before
/// letting a caller mint a key of a service account (a question about the caller's own
/// reach, which changes nothing). Key management, bindings and everything else are the
/// subject's own to ask for.
fn relayable(request: &KmsRequest) -> bool {
    matches!(
        request,
        KmsRequest::Encrypt { .. }
            | KmsRequest::Decrypt { .. }
            | KmsRequest::ReEncrypt { .. }
            | KmsRequest::GenerateDataKey { .. }
            | KmsRequest::CheckMayActAs { .. }
    )
}

impl KmsHandler {
    /// A relay's ciphertext is answered only once the version that made it is held for the
    /// relay (`service::holds`).
    async fn hold(&self, relay: &str, answer: KmsResponse) -> Result<KmsResponse, KmsError> {
        let (key_id, version_id) = match &answer {
            KmsResponse::Encrypted {
                key_id, version_id, ..
            }
            | KmsResponse::ReEncrypted {
                key_id, version_id, ..
            }
            | KmsResponse::DataKey {
                key_id, version_id, ..
            } => (key_id, version_id),
            _ => return Ok(answer),
        };
        self.kms.note_hold(relay, key_id, version_id).await?;
        Ok(answer)
    }

    /// Answers a decrypt read in place, with the same checks as any other request.
    fn decrypt(&self, session: &Session, call: DecryptCall<'_>, out: &mut Vec<u8>) {
        let relayed = call.on_behalf_of.as_ref().map(|p| Principal {
            subject: p.subject,
            groups: Groups::Borrowed(&p.groups),
        });
        let d = call.decrypt;
        let max = self.max_frame;
        let direct = relayed.is_none();
        if direct && let Err(e) = crate::audit::admit() {
            let refused = KmsError::Unavailable(e.to_string());
            respond::<()>(out, call.id, Err(refused.answer()), max);
            return;
        }
        let answered = caller(session, relayed).and_then(|caller| {
            self.kms
                .decrypt_then(&caller, d.key_id, d.aad_context, d.ciphertext, |plain| {
                    let answer = DecryptedRef {
                        key_id: plain.key_id,
                        version_id: plain.version_id,
                        plaintext: &plain.plaintext,
                    };
                    respond(out, call.id, Ok(answer), max);
                })
        });
        if direct {
            let resource = format!("key {}", d.key_id);
            record_request(session, "Decrypt", &resource, &answered);
        }
        if let Some(meter) = &self.operations {
            let error = answered.as_ref().err().map(|e| e.code());
            meter.operation(&self.kms, DECRYPT, d.key_id, error);
            if !direct {
                meter.decision(error);
            }
        }
        if let Err(e) = answered {
            respond::<()>(out, call.id, Err(e.answer()), max);
        }
    }
}

/// Records a direct request's outcome in the audit trail.
fn record_request<T>(
    session: &Session,
    request: &str,
    resource: &str,
    answered: &Result<T, KmsError>,
) {
    crate::audit::record_request(crate::audit::Request {
        subject: &session.identity.subject,
        request,
        resource,
        status: answered
            .as_ref()
            .map_or_else(|e| e.code().as_str(), |_| "OK"),
    });
}

/// What a request that changes something or uses a key is about, for its audit line;
/// `None` for reads of metadata, which are not audited.
fn audited_resource(request: &KmsRequest) -> Option<String> {
    use KmsRequest as R;
    let key = |id: &str| Some(format!("key {id}"));
    let folder = |id: &str| Some(format!("folder {id}"));
    match request {
        R::CreateSymmetricKey(c) => folder(&c.folder_id),
        R::CreateAsymmetricSignatureKey(c) => folder(&c.folder_id),
        R::UpdateSymmetricKey(u) => key(&u.key_id),
        R::DeleteSymmetricKey { key_id }
        | R::RotateSymmetricKey { key_id }
        | R::SetPrimaryVersion { key_id, .. }
        | R::ScheduleVersionDestruction { key_id, .. }
        | R::CancelVersionDestruction { key_id, .. }
        | R::Encrypt { key_id, .. }
        | R::Decrypt { key_id, .. }
        | R::ReEncrypt { key_id, .. }
        | R::GenerateDataKey { key_id, .. }
        | R::Sign { key_id, .. }
        | R::SignHash { key_id, .. }
        | R::ReportHolds { key_id, .. }
        | R::ReleaseHolds { key_id, .. } => key(key_id),
        R::SetAccessBindings { resource, .. } | R::UpdateAccessBindings { resource, .. } => {
            Some(match resource {
                lockbox_proto::kms::ResourceRef::Root => "root".into(),
                lockbox_proto::kms::ResourceRef::Folder(id) => format!("folder {id}"),
                lockbox_proto::kms::ResourceRef::Key(id) => format!("key {id}"),
                _ => "unknown".into(),
            })
        }
        R::DangerAdvanceClock { .. } | R::ExportKeystore { .. } => Some("root".into()),
        R::GetSymmetricKey { .. }
        | R::ListSymmetricKeys { .. }
        | R::ListSymmetricKeyVersions { .. }
        | R::GetAsymmetricSignatureKey { .. }
        | R::ListAsymmetricSignatureKeys { .. }
        | R::GetPublicKey { .. }
        | R::ListAccessBindings { .. }
        | R::ListQuotas { .. }
        | R::CheckMayActAs { .. } => None,
        // A request added later is audited until it is placed above.
        _ => Some("unknown".into()),
    }
}

/// Whose permissions a request from `session` runs with: its own, or those of the principal
/// it relays, which only an enrolled relay may do.
fn caller<'a>(
    session: &'a Session,
    relayed: Option<Principal<'a>>,
) -> Result<Caller<'a>, KmsError> {
    match relayed {
        Some(_) if !session.relay => Err(KmsError::NotARelay(session.identity.subject.clone())),
        Some(principal) => Ok(Caller {
            principal,
            relay: Some(&session.identity.subject),
        }),
        None => Ok(Caller {
            principal: Principal {
                subject: &session.identity.subject,
                groups: Groups::Owned(&session.identity.groups),
            },
            relay: None,
        }),
    }
}

fn keys_page(page: Page<crate::service::SymmetricKeyInfo>) -> KmsResponse {
    KmsResponse::SymmetricKeys {
        keys: page.items.into_iter().map(wire::symmetric_key_to).collect(),
        next_page_token: page.next_page_token,
    }
}

async fn dispatch(
    kms: &Kms,
    caller: &Caller<'_>,
    request: KmsRequest,
) -> Result<KmsResponse, KmsError> {
    use KmsRequest as R;
    use KmsResponse as A;
    Ok(match request {
        R::Decrypt {
            key_id,
            aad_context,
            ciphertext,
        } => {
            let mut d = kms.decrypt(caller, &key_id, &aad_context, &ciphertext)?;
            A::Decrypted {
                plaintext: SecretBytes::new(std::mem::take(&mut *d.plaintext)),
                key_id: d.key_id,
                version_id: d.version_id,
            }
        }
        R::Encrypt {
            key_id,
            version_id,
            aad_context,
            plaintext,
        } => {
            let e = kms.encrypt(
                caller,
                &key_id,
                version_id.as_deref(),
                &aad_context,
                plaintext.expose(),
            )?;
            A::Encrypted {
                key_id: e.key_id,
                version_id: e.version_id,
                ciphertext: e.ciphertext,
            }
        }
        R::ReEncrypt {
            key_id,
            version_id,
            aad_context,
            source_key_id,
            source_aad_context,
            ciphertext,
        } => {
            let (e, source_version_id) = kms.re_encrypt(
                caller,
                &key_id,
                version_id.as_deref(),
                &aad_context,
                &source_key_id,
                &source_aad_context,
                &ciphertext,
            )?;
            A::ReEncrypted {
                key_id: e.key_id,
                version_id: e.version_id,
                source_key_id,
                source_version_id,
                ciphertext: e.ciphertext,
            }
        }
        R::GenerateDataKey {
            key_id,
            version_id,
            aad_context,
            data_key_spec,
            skip_plaintext,
        } => {
            let spec = wire::algorithm_from(data_key_spec)?;
            let dk = kms.generate_data_key(
                caller,
                &key_id,
                version_id.as_deref(),
                &aad_context,
                spec,
                skip_plaintext,
            )?;
            A::DataKey {
                key_id: dk.encrypted.key_id,
                version_id: dk.encrypted.version_id,
                data_key_plaintext: dk
                    .plaintext
                    .map(|mut p| SecretBytes::new(std::mem::take(&mut *p))),
                data_key_ciphertext: dk.encrypted.ciphertext,
            }
        }
        R::CreateSymmetricKey(c) => {
            let spec = KeySpec {
                meta: KeyMetaSpec {
                    folder_id: c.folder_id,
                    name: c.name,
                    description: c.description,
                    labels: c.labels,
                    deletion_protection: c.deletion_protection,
                },
                algorithm: wire::algorithm_from(c.default_algorithm)?,
                rotation_period: c.rotation_period,
            };
            A::SymmetricKey(Box::new(wire::symmetric_key_to(
                kms.create_symmetric_key(caller, spec).await?,
            )))
        }
        R::GetSymmetricKey { key_id } => A::SymmetricKey(Box::new(wire::symmetric_key_to(
            kms.get_symmetric_key(caller, &key_id)?,
        ))),
        R::ListSymmetricKeys { folder_id, page } => keys_page(kms.list_symmetric_keys(
            caller,
            &folder_id,
            page.page_size,
            &page.page_token,
        )?),
        R::UpdateSymmetricKey(u) => {
            let key_id = u.key_id.clone();
            let update = wire::key_update_from(u)?;
            A::SymmetricKey(Box::new(wire::symmetric_key_to(
                kms.update_symmetric_key(caller, &key_id, update).await?,
            )))
        }
        R::DeleteSymmetricKey { key_id } => {
            kms.delete_symmetric_key(caller, &key_id).await?;
            A::Done
        }
        R::ListSymmetricKeyVersions { key_id, page } => {
            let p =
                kms.list_symmetric_key_versions(caller, &key_id, page.page_size, &page.page_token)?;
            A::SymmetricKeyVersions {
                versions: p.items.into_iter().map(wire::version_to).collect(),
                next_page_token: p.next_page_token,
            }
        }
        R::RotateSymmetricKey { key_id } => A::SymmetricKey(Box::new(wire::symmetric_key_to(
            kms.rotate_symmetric_key(caller, &key_id).await?,
        ))),
        R::SetPrimaryVersion { key_id, version_id } => {
            A::SymmetricKey(Box::new(wire::symmetric_key_to(
                kms.set_primary_version(caller, &key_id, &version_id)
                    .await?,
            )))
        }
        R::ScheduleVersionDestruction {
            key_id,
            version_id,
            pending_period,
        } => A::SymmetricKeyVersion(Box::new(wire::version_to(
            kms.schedule_version_destruction(caller, &key_id, &version_id, pending_period)
                .await?,
        ))),
        R::CancelVersionDestruction { key_id, version_id } => {
            A::SymmetricKeyVersion(Box::new(wire::version_to(
                kms.cancel_version_destruction(caller, &key_id, &version_id)
                    .await?,
            )))
        }
        R::CreateAsymmetricSignatureKey(c) => {
            let spec = KeyMetaSpec {
                folder_id: c.folder_id,
                name: c.name,
                description: c.description,
                labels: c.labels,
                deletion_protection: c.deletion_protection,
            };
            A::AsymmetricSignatureKey(Box::new(wire::signature_key_to(
                kms.create_signature_key(caller, spec).await?,
            )))
        }
        R::GetAsymmetricSignatureKey { key_id } => A::AsymmetricSignatureKey(Box::new(
            wire::signature_key_to(kms.get_signature_key(caller, &key_id)?),
        )),
        R::ListAsymmetricSignatureKeys { folder_id, page } => {
            let p =
                kms.list_signature_keys(caller, &folder_id, page.page_size, &page.page_token)?;
            A::AsymmetricSignatureKeys {
                keys: p.items.into_iter().map(wire::signature_key_to).collect(),
                next_page_token: p.next_page_token,
            }
        }
        R::GetPublicKey { key_id } => {
            let public_key_pem = kms.get_public_key(caller, &key_id)?;
            A::PublicKey {
                key_id,
                public_key_pem,
            }
        }
        R::Sign { key_id, message } => {
            let signature = kms.sign(caller, &key_id, &message)?;
            A::Signature { key_id, signature }
        }
        R::SignHash { key_id, hash } => {
            let signature = kms.sign_hash(caller, &key_id, &hash)?;
            A::Signature { key_id, signature }
        }
        R::ListAccessBindings { resource, page } => {
            let resource = wire::resource_from(resource)?;
            let p =
                kms.list_access_bindings(caller, &resource, page.page_size, &page.page_token)?;
            A::AccessBindings {
                bindings: p.items.into_iter().map(wire::binding_to).collect(),
                next_page_token: p.next_page_token,
            }
        }
        R::SetAccessBindings { resource, bindings } => {
            let resource = wire::resource_from(resource)?;
            let update = BindingUpdate::Set(bindings.into_iter().map(wire::binding_from).collect());
            kms.update_access_bindings(caller, &resource, update)
                .await?;
            A::Done
        }
        R::UpdateAccessBindings { resource, deltas } => {
            let resource = wire::resource_from(resource)?;
            let deltas = deltas
                .into_iter()
                .map(wire::delta_from)
                .collect::<Result<Vec<_>, _>>()?;
            kms.update_access_bindings(caller, &resource, BindingUpdate::Deltas(deltas))
                .await?;
            A::Done
        }
        R::CheckMayActAs { subject } => {
            kms.check_may_act_as(caller, &subject)?;
            A::Done
        }
        R::ExportKeystore { offset, length } => {
            let chunk = kms.export_keystore(caller, offset, length).await?;
            A::KeystoreChunk {
                schema: chunk.schema,
                total_size: chunk.total_size,
                sha256: chunk.sha256,
                bytes: chunk.bytes,
            }
        }
        R::ReleaseHolds { key_id, version_id } => {
            kms.release_holds(caller, &key_id, &version_id).await?;
            A::Done
        }
        R::ListQuotas { folder_id } => A::Quotas {
            quotas: kms
                .list_quotas(caller, &folder_id)?
                .into_iter()
                .map(|q| lockbox_proto::common::Quota {
                    name: q.name.into(),
                    per: q.per.into(),
                    limit: q.limit,
                    usage: Some(q.usage),
                    resource: q.resource,
                })
                .collect(),
            folder_id,
        },
        R::ReportHolds { key_id, held } => {
            let held = held
                .into_iter()
                .map(|h| (h.version_id, h.data_keys))
                .collect();
            kms.report_holds(caller, &key_id, &held).await?;
            A::Done
        }
        R::DangerAdvanceClock { seconds } => {
            // Only a root administrator may move time, even on a test server.
            kms.require_root_admin(caller)?;
            A::ClockAdvanced {
                now: kms.advance_clock(seconds).await?,
            }
        }
        _ => {
            return Err(KmsError::InvalidArgument(
                "request kind not supported by this lockbox-kms".into(),
            ));
        }
    })
}
