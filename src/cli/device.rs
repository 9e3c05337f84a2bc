//! `devbound device ...`: the operator's device list and revocation, and, with the `tpm`
//! feature, the device's own enrollment, refresh and keep-alive.

use serde_json::{Value, json};

use super::DeviceCommand;
use super::ListFilter;
use super::operator::{Backend, append_audit, open, remote_call, user_id_by_name};
use crate::audit::Event;
use crate::clock::{Clock, SystemClock};
use crate::http::{DeviceView, routes};
use crate::store::Store;

pub async fn run(command: DeviceCommand) -> Result<(), String> {
    match command {
        DeviceCommand::List(ListFilter { user, json, data }) => {
            let devices = list(&open(&data)?, user.as_deref()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&devices).unwrap_or_default()
                );
            } else {
                print_devices(&devices);
            }
            Ok(())
        }
        DeviceCommand::Revoke { id, data } => {
            revoke(&open(&data)?, &id).await?;
            println!("revoked device {id}; its sessions end at their next refresh");
            Ok(())
        }
        #[cfg(feature = "tpm")]
        command => tpm::run(command).await,
    }
}

async fn list(backend: &Backend, user: Option<&str>) -> Result<Value, String> {
    match backend {
        Backend::Direct(store) => {
            let owner_id = user_id_by_name(store, user)?;
            let devices = store
                .list_devices(owner_id.as_deref())
                .map_err(|error| error.to_string())?;
            Ok(json!(
                devices.iter().map(DeviceView::new).collect::<Vec<_>>()
            ))
        }
        remote => {
            let path = match user {
                Some(name) => format!("{}?user={name}", routes::ADMIN_DEVICES),
                None => routes::ADMIN_DEVICES.to_owned(),
            };
            Ok(remote_call(remote, reqwest::Method::GET, &path, None).await?["devices"].take())
        }
    }
}

async fn revoke(backend: &Backend, id: &str) -> Result<(), String> {
    match backend {
        Backend::Direct(store) => {
            crate::device::revoke_stored(store, id, "operator", SystemClock.now())
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no device {id:?}"))?;
            let event = Event::allowed("operator", "device.revoke", format!("device:{id}"));
            append_audit(store, &event)?;
            store.flush_now().map_err(|error| error.to_string())
        }
        remote => {
            let path = routes::with_id(routes::ADMIN_DEVICE_REVOKE, id);
            remote_call(remote, reqwest::Method::POST, &path, None)
                .await
                .map(drop)
        }
    }
}

fn print_devices(devices: &Value) {
    println!(
        "{:<24} {:<20} {:<9} {:<24} OWNER ID",
        "DEVICE", "NAME", "ASSURANCE", "REVOKED"
    );
    for device in devices.as_array().into_iter().flatten() {
        let revoked = device["revoked_at"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), crate::http::utc);
        println!(
            "{:<24} {:<20} {:<9} {:<24} {}",
            device["id"].as_str().unwrap_or("-"),
            device["name"].as_str().unwrap_or("-"),
            device["assurance"].as_str().unwrap_or("-"),
            revoked,
            device["owner_id"].as_str().unwrap_or("-"),
        );
    }
}

#[cfg(feature = "tpm")]
mod tpm {
    use super::super::DeviceCommand;
    use crate::client::device::{self, DeviceSession};

    pub async fn run(command: DeviceCommand) -> Result<(), String> {
        match command {
            DeviceCommand::Enroll {
                server,
                tcti,
                code,
                ca_cert,
                state_dir,
            } => {
                let ca = std::fs::read_to_string(&ca_cert)
                    .map_err(|error| format!("cannot read {}: {error}", ca_cert.display()))?;
                let code = match code {
                    Some(code) => code,
                    None => read_code()?,
                };
                let state = device::enroll(&server, &ca, &tcti, &code, &state_dir)
                    .await
                    .map_err(|error| error.to_string())?;
                println!(
                    "enrolled device {} at assurance {}; session {} (state in {})",
                    state.device_id,
                    state.assurance,
                    state.session_id,
                    state_dir.display()
                );
                Ok(())
            }
            DeviceCommand::Refresh {
                tcti,
                state_dir,
                count,
                get,
            } => {
                let mut session =
                    DeviceSession::open(&state_dir, &tcti).map_err(|error| error.to_string())?;
                let run = session.refresh_many(count).await;
                let body = match (&run, get) {
                    (Ok(_), Some(path)) => Some(session.get(&path).await),
                    _ => None,
                };
                let closed = session.close(&state_dir);
                let run = run.map_err(|error| error.to_string())?;
                closed.map_err(|error| error.to_string())?;
                println!(
                    "refreshed {} times in {} requests, {:.3} s ({:.2} ms per refresh)",
                    run.refreshes,
                    run.requests,
                    run.elapsed.as_secs_f64(),
                    run.elapsed.as_secs_f64() * 1000.0 / f64::from(run.refreshes.max(1))
                );
                if let Some(body) = body {
                    let (status, body) = body.map_err(|error| error.to_string())?;
                    println!("{} {}", status.as_u16(), body);
                }
                Ok(())
            }
            DeviceCommand::KeepAlive {
                tcti,
                state_dir,
                max_refreshes,
            } => {
                let refreshed =
                    device::keep_alive(&state_dir, &tcti, max_refreshes, |count, max_age| {
                        println!(
                            "refresh {count}: cookie valid for {} s",
                            max_age.unwrap_or(0)
                        );
                    })
                    .await
                    .map_err(|error| error.to_string())?;
                println!("stopped after {refreshed} refreshes");
                Ok(())
            }
            DeviceCommand::List(_) | DeviceCommand::Revoke { .. } => Ok(()),
        }
    }

    fn read_code() -> Result<String, String> {
        let mut code = String::new();
        std::io::stdin()
            .read_line(&mut code)
            .map_err(|error| format!("cannot read the code from standard input: {error}"))?;
        Ok(code.trim().to_owned())
    }
}
