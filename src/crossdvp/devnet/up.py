"""`crossdvp devnet up`: a whole local network in one call.

Steps, each reported through `progress`:
1. anvil: with a whole-second `block_time_s`, automine while deploying, then a block every
   `block_time_s` (evm_setIntervalMining) so that confirmation-depth finality keeps advancing; with a
   fractional one (anvil's RPC takes whole seconds only), `--block-time` from the start, and every
   deployment and setup transaction waits for its receipt as the blocks come;
2. DON signer keys (random, in encrypted keystores) and the asset network: KeystoneForwarder
   configured with the DON, KYCRegistry, FundToken, DvPEscrow (crossdvp.chain.deploy);
3. the parties on the chain: seller (issuer treasury, KYC'd, minted fund shares) and buyer (bank
   client, KYC'd to receive shares), each with gas;
4. the payments service (SQLite under the directory unless a database URL is given), the DON config
   set in the ledger, the parties as participants with USD accounts, the buyer's cash in, one oracle
   credential per node;
5. the oracle nodes: a TOML config each, transmitter = a funded anvil dev account, started in parallel.

The state file is saved after every process start, so `devnet down` can stop a half-started network;
if a step fails, every process started so far is stopped before the error is raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from crossdvp.chain.anvil import dev_keys, start_anvil
from crossdvp.chain.client import EvmClient
from crossdvp.chain.deploy import deploy_asset_network
from crossdvp.devnet.errors import DevnetError, DevnetRunningError
from crossdvp.devnet.keyfiles import generate_password, secure_dir, write_keystore, write_secret
from crossdvp.devnet.nodeconfig import (
    KEY_PASSWORD_ENV,
    PAYMENTS_API_KEY_ENV,
    TRANSMITTER_KEY_ENV,
    NodeTiming,
    don_section,
    evm_network_section,
    node_config_toml,
    payments_network_section,
    poll_interval_ms_for,
    workflow_section,
)
from crossdvp.devnet.state import (
    ChainState,
    DevnetState,
    NodeState,
    PartyState,
    PaymentsState,
    ProcessRecord,
    load_state,
    process_start_ticks,
    receipt_timeout_s,
    save_state,
    state_path,
)
from crossdvp.errors import ConfigError, CrossDvpError
from crossdvp.payments.client import PaymentsClient
from crossdvp.process import ManagedProcess, free_port, start_process
from crossdvp.settlement.report import DonConfig, WorkflowIdentity

__all__ = [
    "MAX_BLOCK_GAS_LIMIT",
    "MIN_BLOCK_GAS_LIMIT",
    "MIN_BLOCK_TIME_S",
    "DevnetOptions",
    "Progress",
    "check_block_gas_limit",
    "check_block_time",
    "check_finality_depth",
    "devnet_up",
]

Progress = Callable[[str], None]

_ETH = 10**18
# Devnet keystores are encrypted with a lighter scrypt work factor (2**14 instead of 2**18): the
# password sits next to them anyway, and the nodes and the SDK decrypt them at every start.
_DEVNET_SCRYPT_N = 2**14
WORKFLOW_NAME = "crossdvp-dvp"
LEDGER_ID = "crossdvp-payments"
# What `up` leaves in a directory; a later `up` in the same directory clears exactly these.
_OWNED = ("keys", "nodes", "logs", "payments.sqlite3", "payments.sqlite3-wal", "payments.sqlite3-shm")
#: Bounds of `--block-gas-limit` (anvil's `--gas-limit`). The floor rejects values that cannot be
#: meant (`30` for 30 million); it does not promise that everything fits: a node's 100-item report
#: takes about 4.3 M gas. The ceiling keeps the limit a signed 64-bit integer (anvil takes a u64).
MIN_BLOCK_GAS_LIMIT = 1_000_000
MAX_BLOCK_GAS_LIMIT = 2**63 - 1
_ANVIL_DEFAULT_GAS_LIMIT = 30_000_000
#: The shortest `--block-time` (seconds). anvil mines at any interval, but the nodes poll about four
#: times a block and their config's floor is 10 ms: shorter blocks would outrun their polls.
MIN_BLOCK_TIME_S = 0.05


def check_block_gas_limit(value: object, option: str = "--block-gas-limit") -> None:
    """Reject (ConfigError naming `option`) a block gas limit that is not an int (a bool is not one)
    in MIN_BLOCK_GAS_LIMIT..MAX_BLOCK_GAS_LIMIT. None (anvil's default, 30,000,000) passes."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{option} must be an integer, got {value!r}")
    if not MIN_BLOCK_GAS_LIMIT <= value <= MAX_BLOCK_GAS_LIMIT:
        raise ConfigError(
            f"{option} must be from {MIN_BLOCK_GAS_LIMIT:,} to 2**63-1 gas "
            f"(anvil's default is {_ANVIL_DEFAULT_GAS_LIMIT:,}), got {value:,}"
        )


def check_block_time(value: object, option: str = "--block-time") -> None:
    """Reject (ConfigError naming `option`) a block time that is not a finite number of seconds (an
    int or a float; a bool is not one) of at least MIN_BLOCK_TIME_S. Fractions are allowed: 0.1
    mines ten blocks a second (several then share one whole-second timestamp)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"{option} must be a number of seconds (e.g. 1 or 0.1), got {value!r}")
    if not math.isfinite(value) or value < MIN_BLOCK_TIME_S:
        raise ConfigError(
            f"{option} must be a finite number of seconds >= {MIN_BLOCK_TIME_S:g} (e.g. 1 or 0.1), "
            f"got {value!r}"
        )


def check_finality_depth(value: object, option: str = "--finality-depth") -> None:
    """Reject (ConfigError naming `option`) a finality depth that is not an int >= 1 (a bool is not
    one)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{option} must be an integer >= 1 (confirmations), got {value!r}")


def _whole_seconds(block_time_s: float) -> int | None:
    """`block_time_s` as an int if it is a whole number of seconds (what evm_setIntervalMining
    takes), else None."""
    return int(block_time_s) if float(block_time_s).is_integer() else None


@dataclass(frozen=True, slots=True)
class DevnetOptions:
    """What `devnet up` starts. Rejections (ConfigError): fewer than 4 nodes (a DON needs n >= 3f+1
    with f >= 1); a block time that is not a finite number of seconds >= MIN_BLOCK_TIME_S
    (check_block_time); a finality depth below 1; a block gas limit that is not an int in
    1,000,000..2**63-1 (check_block_gas_limit); non-positive opening balances.

    `block_time_s` is in seconds and may be fractional (0.1: ten blocks a second); the nodes then
    poll the chain a few times per block (nodeconfig.poll_interval_ms_for). `block_gas_limit` None
    keeps anvil's default (30,000,000 gas per block). The bench raises it to see what the machine,
    rather than the chain's block space, can settle per second."""

    directory: Path
    nodes: int = 4
    database_url: str | None = None
    chain_id: int = 31337
    block_time_s: float = 1
    finality_depth: int = 2
    block_gas_limit: int | None = None
    grace_s: int = 600
    seller_shares_minor: int = 10_000 * 10**18  # 10,000 fund shares (18 decimals)
    buyer_cash_minor: int = 100_000_000  # USD 1,000,000.00
    currency: str = "USD"
    timing: NodeTiming = field(default_factory=NodeTiming)

    def __post_init__(self) -> None:
        if self.nodes < 4:
            raise ConfigError(f"--nodes must be at least 4 (n >= 3f+1 with f >= 1), got {self.nodes}")
        check_block_time(self.block_time_s)
        check_finality_depth(self.finality_depth)
        check_block_gas_limit(self.block_gas_limit)
        if self.seller_shares_minor <= 0 or self.buyer_cash_minor <= 0:
            raise ConfigError("opening balances must be positive")

    @property
    def f(self) -> int:
        return (self.nodes - 1) // 3

    @property
    def node_timing(self) -> NodeTiming:
        """`timing` with the chain poll interval suited to the block time (poll_interval_ms_for)."""
        return replace(self.timing, poll_interval_ms=poll_interval_ms_for(self.timing, self.block_time_s))

    def anvil_args(self, accounts: int) -> list[str]:
        """anvil's arguments beyond host, port and chain id: `accounts` funded dev accounts, and the
        block gas limit if one was chosen."""
        args = ["--accounts", str(accounts)]
        if self.block_gas_limit is not None:
            args += ["--gas-limit", str(self.block_gas_limit)]
        return args


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold `<dir>/devnet.lock` for the length of `up`: two `up`s racing in one directory would
    otherwise both find no running devnet and both start one."""
    lock_path = directory / "devnet.lock"
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevnetRunningError(
                f"another `crossdvp devnet up` is starting a devnet in {directory} right now"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _refuse_if_running(directory: Path) -> None:
    if not state_path(directory).exists():
        return
    try:
        previous = load_state(directory)
    except ConfigError:
        return  # an unreadable leftover: nothing we could stop anyway; it is replaced
    live = previous.live_processes()
    if live:
        pids = ", ".join(f"{p.name} {p.pid}" for p in live)
        raise DevnetRunningError(
            f"a devnet is already running in {directory} ({pids}); use it, or stop it first with "
            f"`crossdvp devnet down --dir {directory}`"
        )


def _clear_leftovers(directory: Path) -> None:
    """Remove what a previous, stopped devnet left in `directory`. Only a directory that holds a
    devnet state file is cleared: `--dir` pointing at a directory with someone else's `keys/` or
    `logs/` is refused rather than emptied."""
    present = [name for name in _OWNED if (directory / name).exists()]
    if present and not state_path(directory).exists():
        raise ConfigError(
            f"{directory} is not a devnet directory but contains {', '.join(present)}; "
            "choose an empty or new directory for --dir"
        )
    for name in _OWNED:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _command(module: str, group: str) -> list[str]:
    """argv that runs one command group of the crossdvp CLI (e.g. `crossdvp payments ...`) in this
    Python. The group's own Typer app is run rather than the root CLI, so a service process imports
    only what it serves."""
    return [sys.executable, "-c", f"from {module} import app; app(prog_name='crossdvp {group}')"]


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def _record(process: ManagedProcess) -> ProcessRecord:
    return ProcessRecord(
        name=process.name,
        pid=process.pid,
        start_ticks=process_start_ticks(process.pid),
        log_path=process.log_path,
    )


class _Launcher:
    """Starts processes, records each in the state file at once, and stops them all on failure."""

    def __init__(self, state: DevnetState) -> None:
        self.state = state
        self.started: list[ManagedProcess] = []

    def add(self, process: ManagedProcess) -> None:
        self.started.append(process)
        self.state = self.state.with_process(_record(process))
        save_state(self.state)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            with contextlib.suppress(Exception):
                process.stop()


def devnet_up(
    options: DevnetOptions,
    progress: Progress = lambda _line: None,
    *,
    rng: Callable[[int], bytes] = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> DevnetState:
    """Start a devnet in `options.directory` and return its state (also saved to devnet.json).

    Raises DevnetRunningError if a devnet recorded in that directory still has a live process or
    another `up` is starting one; ConfigError if the directory is not a devnet directory but holds
    files a devnet would overwrite; DevnetError (with the failing step and its cause) if any step
    fails, after stopping every process this call started.
    """
    directory = options.directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive(directory):
        _refuse_if_running(directory)
        _clear_leftovers(directory)
        keys_dir = secure_dir(directory / "keys")
        password = generate_password()
        password_file = write_secret(keys_dir / "password", password)
        state = DevnetState(directory=directory, created_at_s=int(clock()), password_file=password_file)
        save_state(state)
        launcher = _Launcher(state)
        try:
            return _bring_up(options, directory, password, launcher, progress, rng)
        except (CrossDvpError, OSError) as exc:  # OSError: e.g. a binary that is not there
            launcher.stop_all()
            save_state(launcher.state)
            raise DevnetError(f"devnet up failed: {exc}") from exc
        except BaseException:  # Ctrl-C included: leave nothing running
            launcher.stop_all()
            save_state(launcher.state)
            raise


def _bring_up(
    options: DevnetOptions,
    directory: Path,
    password: str,
    launcher: _Launcher,
    progress: Progress,
    rng: Callable[[int], bytes],
) -> DevnetState:
    keys_dir = directory / "keys"
    logs_dir = directory / "logs"
    n = options.nodes

    # 1. anvil: enough funded dev accounts for the deployer and one transmitter per node. A whole
    # number of seconds: automine while deploying, interval mining set after (step 3). A fraction
    # (which evm_setIntervalMining cannot take): interval mining from the start.
    accounts = max(10, n + 1)
    interval_s = _whole_seconds(options.block_time_s)
    anvil = start_anvil(
        logs_dir,
        chain_id=options.chain_id,
        block_time_s=None if interval_s is not None else options.block_time_s,
        extra_args=options.anvil_args(accounts),
    )
    launcher.add(anvil.process)
    progress(f"anvil running at {anvil.rpc_url} (chain {anvil.chain_id}, pid {anvil.pid})")
    # Without automine each receipt takes up to a block: wait for several blocks before giving up.
    evm = EvmClient(anvil.rpc_url, timeout_s=receipt_timeout_s(options.block_time_s))
    funded = dev_keys(accounts)
    admin = evm.account(funded[0])
    write_keystore(keys_dir / "admin.keystore.json", funded[0], password, scrypt_n=_DEVNET_SCRYPT_N)

    # 2. the DON's signer keys and the asset network.
    signer_keys = [rng(32) for _ in range(n)]
    signers = tuple(
        write_keystore(keys_dir / f"node-{i}.keystore.json", key, password, scrypt_n=_DEVNET_SCRYPT_N)
        for i, key in enumerate(signer_keys)
    )
    don = DonConfig(don_id=1, config_version=1, f=options.f, signers=signers)
    workflow = WorkflowIdentity(
        workflow_cid=rng(32), workflow_name=WORKFLOW_NAME, workflow_owner=admin.address, report_id=b"\x00\x01"
    )
    progress(f"DON: {n} signer keys (f={don.f}) written as encrypted keystores in {keys_dir}")
    asset = deploy_asset_network(evm, admin, don=don, workflow=workflow, grace_s=options.grace_s)
    bound = asset.bind(evm)
    progress(
        f"contracts deployed: FundToken {asset.token}, KYCRegistry {asset.registry}, "
        f"DvPEscrow {asset.escrow}, KeystoneForwarder {asset.forwarder} (DON config set)"
    )

    # 3. the parties' chain side.
    seller_key, buyer_key = rng(32), rng(32)
    seller_addr = write_keystore(
        keys_dir / "seller.keystore.json", seller_key, password, scrypt_n=_DEVNET_SCRYPT_N
    )
    buyer_addr = write_keystore(
        keys_dir / "buyer.keystore.json", buyer_key, password, scrypt_n=_DEVNET_SCRYPT_N
    )
    for address in (seller_addr, buyer_addr):
        evm.transfer_eth(admin, address, 10 * _ETH)
    bound.registry.set_allowed_batch(admin, [seller_addr, buyer_addr])
    bound.token.mint(admin, seller_addr, options.seller_shares_minor)
    symbol, decimals = bound.token.symbol(), bound.token.decimals()
    progress(
        f"parties KYC'd on chain: seller {seller_addr} holds {options.seller_shares_minor // 10**decimals:,} "
        f"{symbol}; buyer {buyer_addr}"
    )
    # From here on blocks keep coming without transactions, so confirmation depth advances.
    if interval_s is not None:
        evm.request("evm_setIntervalMining", [interval_s])
    # As the chain reports it, so the operator sees the limit in force, the default included.
    gas_limit = evm.latest_block().gas_limit
    chosen = "" if options.block_gas_limit is not None else " (anvil's default)"
    progress(
        f"chain mining a block every {options.block_time_s:g}s, block gas limit {gas_limit:,}{chosen} "
        f"(finality depth {options.finality_depth})"
    )

    # 4. the payments ledger.
    admin_api_key = "cdp_" + secrets.token_urlsafe(32)
    admin_key_file = write_secret(keys_dir / "payments-admin.key", admin_api_key)
    database_url = options.database_url or f"sqlite:///{directory / 'payments.sqlite3'}"
    pay_port = free_port()
    pay_url = f"http://127.0.0.1:{pay_port}"
    payments_proc = start_process(
        "payments",
        [
            *_command("crossdvp.payments.cli", "payments"), "serve",
            "--port", str(pay_port),
            "--ledger-id", LEDGER_ID, "--grace-s", str(options.grace_s),
        ],
        log_path=logs_dir / "payments.log",
        ready=_http_ok(f"{pay_url}/v1/info"),
        # Secrets by environment, never on argv (visible to every user in `ps`): the admin key and
        # the database URL, which may carry a password.
        env={"CROSSDVP_PAYMENTS_ADMIN_KEY": admin_api_key, "CROSSDVP_PAYMENTS_DATABASE_URL": database_url},
        timeout_s=60,
    )  # fmt: skip
    launcher.add(payments_proc)
    shown_url = make_url(database_url).render_as_string(hide_password=True)
    progress(f"payments ledger running at {pay_url} (pid {payments_proc.pid}, database {shown_url})")
    parties: dict[str, PartyState] = {}
    node_api_keys: list[str] = []
    with PaymentsClient(pay_url, admin_api_key) as ledger:
        ledger.put_don_config(don)
        for name, description, address in (
            ("seller", "issuer treasury: sells fund shares, receives cash", seller_addr),
            ("buyer", "bank client: pays cash, receives fund shares", buyer_addr),
        ):
            account_id = f"{name}-{options.currency.lower()}"
            ledger.create_participant(name, description)
            ledger.open_account(account_id, name, options.currency)
            api_key = str(ledger.create_credential("participant", name)["api_key"])
            parties[name] = PartyState(
                name=name,
                description=description,
                chain_address=address,
                chain_keystore=keys_dir / f"{name}.keystore.json",
                participant_id=name,
                accounts={options.currency: account_id},
                payments_key_file=write_secret(keys_dir / f"payments-{name}.key", api_key),
            )
        ledger.cash_in(
            parties["buyer"].accounts[options.currency], options.buyer_cash_minor, "devnet opening balance"
        )
        for _ in range(n):
            node_api_keys.append(str(ledger.create_credential("oracle")["api_key"]))
    progress(
        f"ledger: DON config set; participants seller and buyer with {options.currency} accounts; "
        f"buyer cashed in {options.currency} {options.buyer_cash_minor / 100:,.2f}"
    )
    chain_state = ChainState(
        rpc_url=anvil.rpc_url,
        block_time_s=float(options.block_time_s),
        finality_depth=options.finality_depth,
        block_gas_limit=options.block_gas_limit,
        asset=asset,
        admin_address=admin.address,
        admin_keystore=keys_dir / "admin.keystore.json",
        token_symbol=symbol,
        token_decimals=decimals,
    )
    payments_state = PaymentsState(
        url=pay_url,
        ledger_id=LEDGER_ID,
        database_url=shown_url,  # the state file holds no secret
        admin_key_file=admin_key_file,
        grace_s=options.grace_s,
    )

    # 5. the oracle nodes.
    ports = [free_port() for _ in range(n)]
    members = [(f"node-{i}", f"http://127.0.0.1:{ports[i]}") for i in range(n)]
    don_toml = don_section(don, members)
    networks = [
        evm_network_section(
            anvil.rpc_url, asset, finality=options.finality_depth, transmitter_key_env=TRANSMITTER_KEY_ENV
        ),
        payments_network_section(pay_url, LEDGER_ID),
    ]
    nodes: list[NodeState] = []
    launches: list[tuple[str, list[str], Path, str, dict[str, str]]] = []
    for i in range(n):
        node_dir = directory / "nodes" / f"node-{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        config_path = node_dir / "node.toml"
        keystore = keys_dir / f"node-{i}.keystore.json"
        config_path.write_text(
            node_config_toml(
                index=i,
                name=f"node-{i}",
                port=ports[i],
                data_dir=node_dir,
                keystore=keystore,
                don=don_toml,
                workflow=workflow_section(workflow),
                networks=networks,
                timing=options.node_timing,
            )
        )
        transmitter = funded[1 + i]
        nodes.append(
            NodeState(
                index=i,
                name=f"node-{i}",
                url=members[i][1],
                signer=signers[i],
                transmitter=evm.account(transmitter).address,
                keystore=keystore,
                config=config_path,
                payments_key_file=write_secret(keys_dir / f"node-{i}-payments.key", node_api_keys[i]),
            )
        )
        env = {
            KEY_PASSWORD_ENV: password,
            TRANSMITTER_KEY_ENV: "0x" + transmitter.hex(),
            PAYMENTS_API_KEY_ENV: node_api_keys[i],
        }
        argv = [*_command("crossdvp.oracle.cli", "node"), "run", "--config", str(config_path)]
        launches.append((f"node-{i}", argv, logs_dir / f"node-{i}.log", f"{members[i][1]}/health", env))
    _start_nodes(launches, launcher)
    progress(f"{n} oracle nodes running: " + ", ".join(f"{m[0]} {m[1]}" for m in members))

    final = replace(
        launcher.state,
        chain=chain_state,
        payments=payments_state,
        don=don,
        workflow=workflow,
        nodes=tuple(nodes),
        parties=parties,
        complete=True,
    )
    launcher.state = final
    path = save_state(final)
    progress(f"devnet ready; state in {path}")
    return final


def _start_nodes(
    launches: list[tuple[str, list[str], Path, str, dict[str, str]]], launcher: _Launcher
) -> None:
    """Start every node at once (each takes a second or two to import and bind), record each as soon
    as it is ready, and raise the first failure after the others were recorded (so they get stopped)."""

    def one(spec: tuple[str, list[str], Path, str, dict[str, str]]) -> ManagedProcess:
        name, argv, log_path, health_url, env = spec
        return start_process(name, argv, log_path=log_path, ready=_http_ok(health_url), env=env, timeout_s=90)

    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=len(launches)) as pool:
        futures = [pool.submit(one, spec) for spec in launches]
        for future in futures:
            try:
                launcher.add(future.result())
            except BaseException as exc:  # collect, so that every started node is recorded first
                errors.append(exc)
    if errors:
        raise errors[0]
