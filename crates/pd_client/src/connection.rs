//! Finding and following the PD leader.
//!
//! [`Connection`] holds the gRPC client of the current leader together with a generation
//! number. Whoever sees a transport failure calls [`Connection::reconnect`] with the generation
//! it used; only the first caller for a generation re-runs discovery (`GetMembers` on every
//! known endpoint), the others find the generation already bumped and return at once.

use std::time::Duration;

use atoll_proto::pdpb;
use parking_lot::RwLock;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;
use crate::endpoint::{merge_endpoints, normalize_endpoint};
use crate::error::{check_header, Error, Result};

/// The generated tonic client.
pub(crate) type GrpcClient = pdpb::pd_client::PdClient<Channel>;

/// Largest message the client accepts (e.g. `GetAllStores`, `ScanRegions` on big clusters).
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// What one successful discovery found.
pub(crate) struct Discovery {
    pub(crate) cluster_id: u64,
    pub(crate) leader_url: String,
    pub(crate) client: GrpcClient,
    /// Client urls of every member, for later rediscovery.
    pub(crate) member_urls: Vec<String>,
}

struct LeaderState {
    generation: u64,
    leader_url: String,
    client: GrpcClient,
    /// Initial endpoints followed by the members' client urls seen so far.
    endpoints: Vec<String>,
}

/// The connection to the current PD leader, shared by the client and its background tasks.
pub(crate) struct Connection {
    cluster_id: u64,
    config: Config,
    state: RwLock<LeaderState>,
    /// Serializes rediscovery.
    reconnect_lock: tokio::sync::Mutex<()>,
}

impl Connection {
    /// Discovers the leader through `endpoints`, retrying with backoff for
    /// `config.connect_timeout`.
    pub(crate) async fn connect(endpoints: &[String], config: Config) -> Result<Connection> {
        let mut known = Vec::new();
        for endpoint in endpoints {
            let url = normalize_endpoint(endpoint)?;
            if !known.contains(&url) {
                known.push(url);
            }
        }
        if known.is_empty() {
            return Err(Error::Other("no PD endpoints given".to_owned()));
        }
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        let mut backoff = crate::config::Backoff::new(
            config.base_backoff.max(Duration::from_millis(100)),
            config.max_backoff,
        );
        let discovery = loop {
            match discover(&known, None, &config).await {
                Ok(d) => break d,
                Err(e @ Error::ClusterIdMismatch { .. }) => return Err(e),
                Err(e) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(Error::Transport(format!(
                            "no PD leader found through {known:?} within {:?}: {e}",
                            config.connect_timeout
                        )));
                    }
                    let delay = backoff.next_delay().min(deadline - now);
                    tracing::info!(error = %e, ?delay, "PD not reachable yet, retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        tracing::info!(cluster_id = discovery.cluster_id, leader = %discovery.leader_url, "connected to PD");
        merge_endpoints(&mut known, discovery.member_urls.iter());
        Ok(Connection {
            cluster_id: discovery.cluster_id,
            config,
            state: RwLock::new(LeaderState {
                generation: 0,
                leader_url: discovery.leader_url,
                client: discovery.client,
                endpoints: known,
            }),
            reconnect_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The header every request carries.
    pub(crate) fn header(&self) -> pdpb::RequestHeader {
        pdpb::RequestHeader {
            cluster_id: self.cluster_id,
            sender_id: 0,
        }
    }

    /// The current leader's client and the generation to pass to [`Connection::reconnect`].
    pub(crate) fn current(&self) -> (u64, GrpcClient) {
        let state = self.state.read();
        (state.generation, state.client.clone())
    }

    pub(crate) fn leader_url(&self) -> String {
        self.state.read().leader_url.clone()
    }

    /// Re-runs discovery unless someone already did since `seen_generation`.
    pub(crate) async fn reconnect(&self, seen_generation: u64) -> Result<()> {
        let _guard = self.reconnect_lock.lock().await;
        let endpoints = {
            let state = self.state.read();
            if state.generation != seen_generation {
                return Ok(());
            }
            state.endpoints.clone()
        };
        let discovery = discover(&endpoints, Some(self.cluster_id), &self.config).await?;
        let mut state = self.state.write();
        if state.leader_url != discovery.leader_url {
            tracing::info!(old = %state.leader_url, new = %discovery.leader_url, "PD leader changed");
        } else {
            tracing::info!(leader = %discovery.leader_url, "reconnected to PD leader");
        }
        state.generation += 1;
        state.leader_url = discovery.leader_url;
        state.client = discovery.client;
        merge_endpoints(&mut state.endpoints, discovery.member_urls.iter());
        Ok(())
    }
}

/// Dials a normalized url.
async fn dial(url: &str, config: &Config) -> Result<GrpcClient> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Other(format!("invalid PD url {url:?}: {e}")))?
        .connect_timeout(config.dial_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true);
    let channel = match tokio::time::timeout(config.dial_timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(Error::from_transport(&format!("dial {url}"), &e)),
        Err(_) => return Err(Error::Transport(format!("dial {url}: timed out"))),
    };
    Ok(GrpcClient::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE))
}

/// Asks each endpoint in turn for the members and connects to the leader the first answer
/// names (checking that the leader reports the same cluster id). `expected_cluster_id`
/// rejects members of another cluster.
pub(crate) async fn discover(
    endpoints: &[String],
    expected_cluster_id: Option<u64>,
    config: &Config,
) -> Result<Discovery> {
    let mut last_err = Error::Transport("no PD endpoint to try".to_owned());
    for url in endpoints {
        match discover_via(url, expected_cluster_id, config).await {
            Ok(d) => return Ok(d),
            Err(e) => {
                tracing::debug!(endpoint = %url, error = %e, "PD discovery through endpoint failed");
                // A cluster id mismatch is the most telling failure: keep it over later ones.
                if !matches!(last_err, Error::ClusterIdMismatch { .. }) {
                    last_err = e;
                }
            }
        }
    }
    Err(last_err)
}

/// `GetMembers` on one member; checks the header and, if given, the cluster id.
async fn get_members(
    client: &mut GrpcClient,
    url: &str,
    expected_cluster_id: Option<u64>,
    config: &Config,
) -> Result<(u64, pdpb::GetMembersResponse)> {
    let request = pdpb::GetMembersRequest {
        header: Some(pdpb::RequestHeader {
            cluster_id: expected_cluster_id.unwrap_or(0),
            sender_id: 0,
        }),
    };
    let members = match tokio::time::timeout(config.rpc_timeout, client.get_members(request)).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => return Err(Error::from_status(&status)),
        Err(_) => return Err(Error::Timeout),
    };
    check_header(members.header.as_ref(), 0)?;
    let cluster_id = members.header.as_ref().map_or(0, |h| h.cluster_id);
    if let Some(expected) = expected_cluster_id {
        if cluster_id != expected {
            return Err(Error::ClusterIdMismatch {
                expected,
                actual: cluster_id,
            });
        }
    }
    if cluster_id == 0 {
        return Err(Error::Other(format!(
            "PD at {url} answered GetMembers without a cluster id"
        )));
    }
    Ok((cluster_id, members))
}

async fn discover_via(url: &str, expected_cluster_id: Option<u64>, config: &Config) -> Result<Discovery> {
    let mut client = dial(url, config).await?;
    let (cluster_id, members) = get_members(&mut client, url, expected_cluster_id, config).await?;
    let mut member_urls = Vec::new();
    for member in &members.members {
        member_urls.extend(member.client_urls.iter().cloned());
    }
    let leader_urls = members
        .leader
        .as_ref()
        .map(|l| l.client_urls.clone())
        .unwrap_or_default();
    if leader_urls.is_empty() {
        // Typically a PD that is still electing its leader.
        return Err(Error::Transport(format!("PD at {url} knows no leader yet")));
    }
    let mut last_err = None;
    for leader_url in &leader_urls {
        let leader_url = match normalize_endpoint(leader_url) {
            Ok(u) => u,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        member_urls.push(leader_url.clone());
        if leader_url == url {
            return Ok(Discovery {
                cluster_id,
                leader_url,
                client,
                member_urls,
            });
        }
        // The leader must belong to the same cluster as the member that named it.
        let leader = match dial(&leader_url, config).await {
            Ok(mut leader_client) => get_members(&mut leader_client, &leader_url, Some(cluster_id), config)
                .await
                .map(|_| leader_client),
            Err(e) => Err(e),
        };
        match leader {
            Ok(client) => {
                return Ok(Discovery {
                    cluster_id,
                    leader_url,
                    client,
                    member_urls,
                })
            }
            Err(e @ Error::ClusterIdMismatch { .. }) => return Err(e),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Transport(format!("PD leader named by {url} is unreachable"))))
}
