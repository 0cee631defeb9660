// Shapes exchanged with the Rust side, exactly as docs/app-ipc.md lists them, and the subset of
// the global `window.__TAURI__` (Tauri 2, `withGlobalTauri: true`) that the UI uses.
//
// This file has no top-level import or export, so everything here is global: the ES modules
// refer to these names from JSDoc without importing them.

type Category = "audio" | "video" | "image" | "other";

interface TurnServer {
  url: string;
  username: string;
  credential: string;
}

interface Settings {
  /** Used when `host` is false, e.g. "ws://192.168.1.20:7878". */
  serverUrl: string;
  /** Run the bundled signaling server in the app. */
  host: boolean;
  /** TCP port of the hosted server (0 = any free port). */
  hostPort: number;
  /** "stun:host:port" */
  stunServers: string[];
  turnServers: TurnServer[];
  downloadDir: string;
  /** Resume unfinished downloads at start and when their sharer comes back. */
  resumeDownloads: boolean;
  /** A finished download stays shared: it joins My shares and serves other viewers. */
  shareDownloads: boolean;
  /** Most MiB/s sent to peers, all transfers together; null = no limit. */
  maxUploadMiBps: number | null;
  /** Most MiB/s taken from peers; null = no limit. */
  maxDownloadMiBps: number | null;
  /** The name room members see, at most 64 bytes. */
  displayName: string;
}

interface Hosting {
  listening: string;
  /** ws://<LAN address>:<port>, the addresses others should enter. */
  shareUrls: string[];
}

type Connection =
  | { state: "connecting"; url: string }
  | { state: "connected"; url: string; nodeId: string; shortId: string }
  | { state: "disconnected"; url: string; reason: string; retryInSecs: number };

interface Share {
  infoHash: string;
  name: string;
  path: string;
  size: number;
  mime: string;
  category: Category;
  /** Why it is not shared now (its file is gone); null when it is. Remembered until removed. */
  missing: string | null;
  upload: Upload;
}

/** What one share serves. */
interface Upload {
  infoHash: string;
  /** Nodes connected to it now. */
  peers: number;
  /** Bytes sent since it was shared. */
  sentBytes: number;
  /** Over the last second. */
  rateBytesPerSec: number;
  /** Nodes sent at least one whole piece since it was shared. */
  peersServed: number;
}

interface Hashing {
  path: string;
  name: string;
  bytesDone: number;
  lenBytes: number;
}

interface NetworkFile {
  infoHash: string;
  name: string;
  size: number;
  mime: string;
  category: Category;
  /** Nodes that serve the whole file. */
  holders: number;
  /** Nodes that serve the part they have (viewers still downloading). */
  partialHolders: number;
  /** This node serves the whole file. */
  mine: boolean;
}

/** What `create_room` and `join_room` answer: the room this app is in. */
interface Room {
  /** "K7M3-XQ9P": read it out. */
  code: string;
  /** 32 hex digits: paste it. */
  link: string;
  infoHash: string;
  /** The media's name (inert). */
  name: string;
  isHost: boolean;
  /** Where the player reads the media. */
  watch: Watch;
}

/** The room player's state, sent with every `room_tick`. */
interface PlayerReport {
  positionMs: number;
  playing: boolean;
  seeking: boolean;
  /** readyState >= HAVE_FUTURE_DATA, or ended. */
  ready: boolean;
  rate: number;
}

/** What the room's player must do. */
type PlayerAction =
  | { kind: "play" }
  | { kind: "pause" }
  | { kind: "seek"; positionMs: number }
  | { kind: "rate"; rate: number };

/** One member in the room's list. */
interface RoomMember {
  id: string;
  /** Inert text, or the start of the node id. */
  name: string;
  isHost: boolean;
  isMe: boolean;
  /** null before its first report. */
  state: "playing" | "paused" | "buffering" | null;
  positionMs: number;
  /** 0-1 of the media here. */
  progress: number;
  /** Its position minus the host's, ms. */
  driftMs: number | null;
}

/** What `room_tick` answers. */
interface RoomTick {
  actions: PlayerAction[];
  members: RoomMember[];
  /** "Bob (buffering, 42 %)" while the room waits. */
  waitingFor: string | null;
  /** The room ended: why. */
  closed: string | null;
  hostPositionMs: number | null;
  /** This player's position minus the host's, ms. */
  driftMs: number | null;
  /** The room plays now. */
  playing: boolean;
  /** The host pressed play (the room may wait for someone). */
  hostWantsPlaying: boolean;
  /** When to tick next, ms from now (0-100): sooner when the player must start on time. */
  nextTickMs: number;
  /** The room's live stream, while there is one (issue 12). */
  live: LiveTick | null;
}

interface LiveTick {
  /** This app is the one streaming. */
  hosting: boolean;
  /** A member's: fragmented MP4 for MSE, codecs in Content-Type. */
  url: string | null;
  /** "VP8 video, Opus audio". */
  summary: string;
}

/** What `watch` answers: where the in-app player reads a file. */
interface Watch {
  /** http://127.0.0.1:<port>/<token>/<info hash>/<name>, Range-capable. */
  url: string;
  /** The download the player drives; null when the file is here. */
  transfer: number | null;
  /** The local file when it is here; null while it downloads. */
  path: string | null;
}

/** Byte ranges [start, end) of a download, ascending; bytes in neither list are missing. */
interface PieceMap {
  /** 0 until the download knows its manifest. */
  lenBytes: number;
  /** Verified and written. */
  have: [number, number][];
  /** Requested from a peer, or being written. */
  inFlight: [number, number][];
}

type CandidateType = "host" | "srflx" | "prflx" | "relay" | "unknown";

interface PeerInfo {
  peer: string;
  candidateType: CandidateType;
}

/** "waiting": no sharer online or no server yet; resumes by itself. */
type TransferState = "running" | "waiting" | "completed" | "failed" | "cancelled";

interface Transfer {
  id: number;
  infoHash: string;
  name: string;
  state: TransferState;
  bytesDone: number;
  lenBytes: number;
  /** Over the last second. */
  rateBytesPerSec: number;
  /** Bytes sent to other viewers from the pieces already here, this run. */
  sentBytes: number;
  /** Sent over the last second. */
  uploadRateBytesPerSec: number;
  /** Nodes sent at least one whole piece, this run. */
  peersServed: number;
  etaSecs: number | null;
  /** Open links and how each is reached. */
  peers: PeerInfo[];
  /** Final file once completed. */
  path: string | null;
  /** Why it waits or stopped; null while running, done or cancelled. */
  problem: Problem | null;
  category: Category;
  mime: string;
}

/** Why a download waits or stopped; the UI words it from `kind` and the state. */
type Problem =
  | { kind: "noServer" }
  | { kind: "sharerGone" }
  | { kind: "notResumed" }
  | { kind: "diskFull" }
  | { kind: "storage" }
  | { kind: "other"; message: string };

type LogLevel = "info" | "warn" | "error";

interface LogEntry {
  timeMs: number;
  level: LogLevel;
  message: string;
}

/** Hosting is switched on but its server could not start. */
interface HostingProblem {
  /** What happened and what the app does instead. */
  message: string;
  port: number;
  /** A port that was free a moment ago, if any. */
  freePort: number | null;
}

interface AppState {
  settings: Settings;
  connection: Connection;
  hosting: Hosting | null;
  hostingProblem: HostingProblem | null;
  shares: Share[];
  /** Files being hashed to be shared. */
  hashing: Hashing[];
  /** Newest first. */
  transfers: Transfer[];
  /** Oldest first, at most 500. */
  log: LogEntry[];
}

type UiEvent =
  | { kind: "connection"; connection: Connection }
  | { kind: "hosting"; hosting: Hosting | null; problem: HostingProblem | null }
  | { kind: "hashing"; hashing: Hashing }
  | { kind: "shared"; share: Share }
  /** `path` is set (and `infoHash` empty) when sharing a file failed before it was hashed. */
  | { kind: "unshared"; infoHash: string; reason: string | null; path: string | null }
  | { kind: "indexChanged" }
  /** Frequent, on the Channel. */
  | { kind: "upload"; upload: Upload }
  | { kind: "transfer"; transfer: Transfer }
  | { kind: "log"; entry: LogEntry }
  /** Also logged; shown as a toast. */
  | { kind: "notice"; entry: LogEntry }
  | { kind: "settings"; settings: Settings };

type ErrorCode =
  | "not_connected"
  | "timeout"
  | "server_refused"
  | "unknown_content"
  | "no_holders"
  | "not_shared"
  | "already_downloading"
  | "unknown_transfer"
  | "file"
  | "settings"
  | "dialog"
  | "internal";

/** What every command rejects with. */
interface CommandError {
  code: ErrorCode;
  /** A sentence for people. */
  message: string;
}

// ---- window.__TAURI__ (the parts the UI uses) ----

/** `tauri::ipc::Channel` on the JS side: set `onmessage`, pass it as a command argument. */
interface TauriChannel<T> {
  onmessage: (message: T) => void;
  readonly id: number;
}

interface TauriChannelConstructor {
  new <T = unknown>(onmessage?: (message: T) => void): TauriChannel<T>;
}

interface DragDropPayload {
  type: "enter" | "over" | "drop" | "leave";
  paths?: string[];
  position?: { x: number; y: number };
}

interface TauriEvent<T> {
  event: string;
  id: number;
  payload: T;
}

type TauriUnlisten = () => void;

interface TauriWebview {
  onDragDropEvent(handler: (event: TauriEvent<DragDropPayload>) => void): Promise<TauriUnlisten>;
}

interface TauriGlobal {
  core: {
    invoke<T = unknown>(cmd: string, args?: Record<string, unknown>): Promise<T>;
    Channel: TauriChannelConstructor;
  };
  webview: {
    getCurrentWebview(): TauriWebview;
  };
  event: {
    listen<T = unknown>(name: string, handler: (event: TauriEvent<T>) => void): Promise<TauriUnlisten>;
  };
}

interface Window {
  /** Present because the app sets `withGlobalTauri: true`; absent in a plain browser. */
  __TAURI__?: TauriGlobal;
}
