// The coordinator's /api/v1/ from the panel: the session cookie (HttpOnly, set by the server)
// authenticates; every state change carries X-CSRF-Token from the session object. A 401 sends
// the user back to the login page; other errors carry the server's {"error": "..."} text so
// that it can be shown as is.

export type Role = "viewer" | "operator" | "admin";
export interface Session {
  user: string;
  role: Role;
  csrf_token: string;
}

export class ApiError extends Error {
  // `handled`: a 401 that already sent the user to the login page (nothing more to show).
  constructor(public status: number, message: string, public handled = false) {
    super(message);
  }
}

let session: Session | null = null;
let onUnauthorized: () => void = () => {};

export function currentSession(): Session | null {
  return session;
}
export function setSession(s: Session | null): void {
  session = s;
}
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}
export function canWrite(): boolean {
  return session?.role === "operator" || session?.role === "admin";
}
export function isAdmin(): boolean {
  return session?.role === "admin";
}

const kTimeoutMs = 30000;

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && session) headers["X-CSRF-Token"] = session.csrf_token;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), kTimeoutMs);
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: ctl.signal,
    });
  } catch (e) {
    throw new ApiError(0, ctl.signal.aborted ? `${method} ${path}: no answer within 30 s` :
      `${method} ${path}: the coordinator cannot be reached (${(e as Error).message})`);
  } finally {
    clearTimeout(timer);
  }
  const text = await res.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const msg = (data && typeof data === "object" && "error" in data && typeof (data as { error: unknown }).error === "string")
      ? (data as { error: string }).error
      : `${method} ${path}: HTTP ${res.status}`;
    if (res.status === 401 && path !== "/api/v1/session") {
      session = null;
      onUnauthorized();
      throw new ApiError(res.status, msg, true);
    }
    throw new ApiError(res.status, msg);
  }
  return data as T;
}

export function q(params: Record<string, string | number | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;

// ---- shapes (the contract; fields the server may not send yet are optional) ----------------

export interface ServiceSummary {
  plugin: string;
  state?: string;
  enabled?: boolean;
  port?: number;
}
export interface HostRow {
  name: string;
  address: string;
  enabled: boolean;
  status?: string;
  groups: string[];
  services?: ServiceSummary[] | number;
  services_enabled?: number;
  collectors?: string[];
  last_error?: string | { message: string; at?: string } | null;
  maintenance: boolean;
  maintenance_until?: string | null;
  first_seen?: string;
  last_seen?: string;
  discovered?: boolean;      // reported by trapline-discover at least once
  last_report?: string | null;
  facts?: HostFacts | null;  // from its last report
}
export interface HostFacts {
  os?: string;
  kernel?: string;
  cpus?: number;
  memory_bytes?: number;
}
export interface HostsPage {
  total: number;
  hosts: HostRow[];
}
export interface Service {
  id: number;
  host: string;
  plugin: string;
  port: number;
  uri: string;
  enabled: boolean;
  state: string;
  gone: boolean;
  credential_profile: string | null;
  task: number | null;
  collector: string | null;
  last_error?: string | null;
  first_seen?: string;
  last_seen?: string;
}
export interface HostDetail {
  host: HostRow;
  maintenance: { desired: { on: boolean; until: string | null }; applied: { on: boolean; until: string | null }; in_sync: boolean };
  services: Service[];
  entities: { task: number; plugin: string; kind: string; name: string; gone: boolean; last_seen: string }[];
  errors: { id: number; at: string; message: string; plugin: string; collector: string | null }[];
}
export interface Collector {
  name: string;
  weight: number;
  state: string;
  address: string;
  version: string;
  tasks: number;
  heartbeat_age_s: number | null;
  last_heartbeat: string | null;
  // self_host: the Zabbix host of its own health ([collector] self_host), when set.
  load: { lag_p99_ms?: number; lag_p50_ms?: number; cpu_pct?: number; tasks?: number; self_host?: string } | null;
}
export interface AuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  object_type: string;
  object_id: string;
  before: unknown;
  after: unknown;
}
export interface CredentialProfile {
  name: string;
  kind: string;
  username: string;
  has_secret: boolean;
  options?: Record<string, unknown>;
  host_groups?: string[];  // discovered services of hosts in these groups get this profile
  is_default?: boolean;    // else the kind's default
}
export interface User {
  name: string;
  role: Role;
  disabled: boolean;
  created_at?: string;
}

// A host's status when the server does not say (before the panel endpoints land).
export function hostStatus(hr: HostRow): string {
  if (hr.status) return hr.status;
  if (!hr.enabled) return "disabled";
  if (hr.maintenance) return "maintenance";
  if (Array.isArray(hr.services)) {
    if (hr.services.some((s) => s.enabled !== false && s.state === "error")) return "error";
    if (hr.services.some((s) => s.enabled !== false && s.state === "ok")) return "ok";
  }
  return "unknown";
}

export function lastErrorText(e: HostRow["last_error"]): string {
  if (!e) return "";
  return typeof e === "string" ? e : e.message ?? "";
}

// The answer's list under any of the names the server may use ({"profiles": [...]}, a bare
// array, ...).
export function listOf<T>(r: unknown, ...keys: string[]): T[] {
  if (Array.isArray(r)) return r as T[];
  if (r && typeof r === "object") {
    for (const k of keys) {
      const v = (r as Record<string, unknown>)[k];
      if (Array.isArray(v)) return v as T[];
    }
  }
  return [];
}

export async function credentialProfiles(): Promise<CredentialProfile[]> {
  return listOf<CredentialProfile>(await api("GET", "/api/v1/credential-profiles"), "credential_profiles", "profiles");
}

export interface ZabbixSettings {
  url: string;
  user: string;
  frontend_url: string;
  host_group: string;
}
let zabbixSettings: Promise<ZabbixSettings | null> | null = null;
export function zabbix(): Promise<ZabbixSettings | null> {
  if (!zabbixSettings) {
    zabbixSettings = api<ZabbixSettings>("GET", "/api/v1/settings/zabbix").catch(() => {
      zabbixSettings = null;
      return null;
    });
  }
  return zabbixSettings;
}
