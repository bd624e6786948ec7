// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IReceiver} from "@chainlink/contracts/src/v0.8/keystone/interfaces/IReceiver.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
// The same IERC165 unit IReceiver extends (Chainlink imports it by its versioned name).
import {IERC165} from "@openzeppelin/contracts@5.0.2/utils/introspection/IERC165.sol";

/// @dev The one KeystoneForwarder function the escrow calls.
interface IKeystoneForwarderReport {
  function report(
    address receiver,
    bytes calldata rawReport,
    bytes calldata reportContext,
    bytes[] calldata signatures
  ) external;
}

/// @title DvPEscrow
/// @notice The chain side of crossdvp's lock / decide / execute protocol. A payer locks a leg here
/// (`lock`, tokens move into escrow); the oracle network's signed report, delivered through the
/// genuine Chainlink KeystoneForwarder, settles (pays each lock of the settlement to its payee) or
/// aborts (refunds each lock to its locker). If the token refuses a payout (the payee lost KYC), the
/// lock is recorded as owed and `claim` pays it once the token allows it: the decision is executed
/// atomically even when the transfer has to wait. After `deadline + grace` a locker may `reclaim` a
/// lock that no report executed.
///
/// Storage: `settlementHead(settlementId)` commits to the settlement's open lock records (Locked, or owed
/// after a refused payout), in order, as a keccak hash chain:
///     c_0 = 0;  c_k = keccak256(c_{k-1}, w0, w1, w2, w3) with the lowest bit cleared
///     w0 = token | amount << 160        w1 = locker | deadline << 160 | leg << 224 | state << 232
///     w2 = payee                         w3 = termsHash
/// and the head is c_n with its lowest bit set once a decision has been executed ("closed").
/// A lock appends its record: the settlement's first lock writes one fresh slot, later ones
/// rewrite it. Every later operation is given the whole record list (rebuilt off-chain from this
/// contract's events; see `recordDigest`) and checks it against the head, so it always acts on
/// every open record of the settlement: a deliverer cannot leave a leg out.
///
/// Execution: `deliver(rawReport, reportContext, signatures, records)` calls the genuine
/// KeystoneForwarder's `report` itself. The forwarder verifies the DON's signatures and calls
/// `onReport`, which checks the metadata as DvPEscrow does and, seeing the payload `deliver` is
/// forwarding (EIP-1153 transient storage), only accepts it; `deliver` then applies each item
/// with the supplied records. A report reaching `onReport` straight from the forwarder, or an item
/// whose records do not match the head, has its decision recorded pending (one fresh slot);
/// anyone then finishes it with `execute`, and no lock under those terms can be reclaimed.
///
/// Decisions: SETTLE pays, for each leg index, the first Locked record naming the item's terms
/// hash to its payee and refunds any later Locked record of the same leg under the same terms (a
/// leg is paid once); ABORT refunds every Locked record under the terms. Records naming other
/// terms are left open (ItemSkipped reason 3) for their lockers to reclaim. The oracle must treat
/// a leg's first Locked record under the terms as the leg's lock, as this contract pays it.
/// Once an item has executed a record, the settlement is closed: later locks are refused, so a
/// second report carrying the same decision finds nothing to pay (ItemSkipped reason 2).
///
/// Time: a lock is accepted while `block.timestamp <= deadline`; its locker may reclaim it after
/// `deadline + grace` unless a decision under its terms is pending.
///
/// What the one-word storage asks of callers (it cost four fresh slots per lock before, 209,655 gas
/// per settled leg against about 136,000 now): there is no `getLock` (the events are the record of
/// each lock; `recordsMatch` checks a list); `claim` and `reclaim` take the record list and an
/// index; the token is not asked `canTransfer(escrow, payee, amount)` at lock time (a payee the
/// token refuses at settlement is owed the tokens and claims them later); the same (settlement,
/// leg) may be locked more than once before the settlement closes (see Decisions).
///
/// Tokens: any ERC-20 that moves exactly the amount asked (no fees, no rebasing); tokens that
/// return nothing from transfer are accepted, as SafeERC20 does.
contract DvPEscrow is IReceiver {
  using SafeERC20 for IERC20;

  enum LockState {
    None,
    Locked,
    Settled,
    Aborted,
    Reclaimed,
    SettleOwed,
    AbortOwed
  }

  uint8 private constant _SETTLE = 1;
  uint8 private constant _ABORT = 2;

  uint8 private constant _SKIP_UNKNOWN = 1;
  uint8 private constant _SKIP_FINAL = 2;
  uint8 private constant _SKIP_TERMS_MISMATCH = 3;
  uint8 private constant _SKIP_INVALID_DECISION = 4;

  /// @dev The head's lowest bit: a decision has been executed, no more locks.
  uint256 private constant _CLOSED = 1;

  /// @dev What KeystoneForwarder passes as metadata: rawReport[45:109] =
  /// workflow_cid(32) | workflow_name(10) | workflow_owner(20) | report_id(2).
  uint256 private constant _METADATA_LENGTH = 64;
  /// @dev The rawReport bytes before the payload (version .. report_id).
  uint256 private constant _RAW_HEADER = 109;

  /// @dev Packed record sizes (see `deliver`): with the terms hash omitted, and with it.
  uint256 private constant _REC_SHORT = 83;
  uint256 private constant _REC_LONG = 115;

  /// @dev Gas given to a token payout; see DvPEscrow. A token that needs more (or reverts) makes
  /// the record owed. Before each payout the escrow checks the cap is really available, otherwise
  /// it reverts, so a short gas limit is a retryable failure, never a silently owed payout.
  uint256 private constant _PAYOUT_GAS = 150_000;
  uint256 private constant _PAYOUT_GAS_NEEDED = (_PAYOUT_GAS * 64) / 63 + 5_000;

  /// @dev Transient slots (EIP-1153): the payload hash `deliver` is forwarding, "onReport accepted
  /// it", and the reentrancy guard.
  uint256 private constant _T_EXPECT = 0x1001;
  uint256 private constant _T_ACCEPTED = 0x1002;
  uint256 private constant _T_GUARD = 0x1003;

  /// @notice The only caller of `onReport` (the KeystoneForwarder).
  address public immutable forwarder;
  /// @notice The workflow owner the forwarder's metadata must name.
  address public immutable workflowOwner;
  /// @notice The encoded workflow name (first 10 hex characters of sha256(name), as ASCII).
  bytes10 public immutable workflowName;
  /// @notice The workflow id (CID) the metadata must name.
  bytes32 public immutable workflowId;
  /// @notice Seconds after a lock's deadline before its locker may reclaim it.
  uint64 public immutable grace;

  mapping(bytes32 settlementId => uint256) private _heads;
  /// @dev keccak256(settlementId, termsHash) => decision (1 SETTLE, 2 ABORT) awaiting `execute`.
  mapping(bytes32 key => uint256) private _pending;

  /// @notice A lock record appended (its fields; `recordDigest` names it in later events).
  event Locked(
    bytes32 indexed settlementId,
    uint8 indexed legIndex,
    address indexed token,
    address locker,
    address payee,
    uint256 amount,
    uint64 deadline,
    bytes32 termsHash
  );
  /// @notice The record with digest `record` was paid to its payee.
  event Settled(
    bytes32 indexed settlementId,
    uint8 indexed legIndex,
    address indexed payee,
    uint256 amount,
    bytes32 record
  );
  /// @notice The record with digest `record` was refunded to its locker.
  event Aborted(
    bytes32 indexed settlementId,
    uint8 indexed legIndex,
    address indexed locker,
    uint256 amount,
    bytes32 record
  );
  /// @notice The token refused the payout of record `record` (its Locked digest); the record stays
  /// open with state `state` (SettleOwed or AbortOwed), moved to the end of the list, and
  /// `beneficiary` may `claim` it once the token allows it.
  event Owed(
    bytes32 indexed settlementId,
    uint8 indexed legIndex,
    address indexed beneficiary,
    uint256 amount,
    LockState state,
    bytes32 record
  );
  /// @notice The owed record `record` (its owed digest) was paid.
  event Claimed(
    bytes32 indexed settlementId,
    uint8 indexed legIndex,
    address indexed beneficiary,
    uint256 amount,
    bytes32 record
  );
  /// @notice The locker took back record `record`.
  event Reclaimed(
    bytes32 indexed settlementId,
    uint8 indexed legIndex,
    address indexed locker,
    uint256 amount,
    bytes32 record
  );
  /// @notice A report item (or part of it) that did not apply. reason: 1 no open record for the
  /// settlement, 2 nothing left to execute, 3 a Locked record names other terms (left open), 4 the
  /// decision code is not SETTLE/ABORT.
  event ItemSkipped(bytes32 indexed settlementId, bytes32 termsHash, uint8 decision, uint8 reason);
  /// @notice A decision recorded without a matching record list; `execute` finishes it.
  event DecisionPending(bytes32 indexed settlementId, bytes32 termsHash, uint8 decision);

  error ZeroAmount();
  error AmountTooLarge(uint256 amount);
  error DeadlinePassed(uint64 deadline, uint256 blockTimestamp);
  error PayeeRefused(address token, address payee);
  error SettlementClosed(bytes32 settlementId);
  error UnauthorizedForwarder(address sender);
  error InvalidWorkflowId(bytes32 received);
  error InvalidWorkflowName(bytes10 received);
  error InvalidWorkflowOwner(address received);
  error MalformedMetadata();
  error MalformedRecords();
  error StaleRecords(bytes32 settlementId);
  error ReportNotAccepted();
  error NoPendingDecision(bytes32 settlementId, bytes32 termsHash);
  error DecisionIsPending(bytes32 settlementId, bytes32 termsHash);
  error NotLocker(address caller);
  error ReclaimTooEarly(uint256 availableAt);
  error NotReclaimable(LockState state);
  error NothingOwed(LockState state);
  error Reentrant();
  /// @notice Too little gas left to pay out safely (see `_PAYOUT_GAS`).
  error InsufficientGas(uint256 gasLeft, uint256 needed);

  constructor(
    address forwarder_,
    address workflowOwner_,
    bytes10 workflowName_,
    bytes32 workflowId_,
    uint64 grace_
  ) {
    forwarder = forwarder_;
    workflowOwner = workflowOwner_;
    workflowName = workflowName_;
    workflowId = workflowId_;
    grace = grace_;
  }

  /// @dev One escrow operation at a time: a token called back into the escrow during a payout finds
  /// it busy (locks check the guard only: they write the head before pulling tokens).
  modifier guarded() {
    if (_tload(_T_GUARD) != 0) revert Reentrant();
    _tstore(_T_GUARD, 1);
    _;
    _tstore(_T_GUARD, 0);
  }

  modifier notInside() {
    if (_tload(_T_GUARD) != 0) revert Reentrant();
    _;
  }

  // ------------------------------------------------------------------------------------------------
  // lock
  // ------------------------------------------------------------------------------------------------

  /// @notice Lock `amount` of `token` for leg `legIndex` of settlement `settlementId`: the caller's
  /// consent to pay `payee` if the oracle network decides SETTLE for `termsHash`. Pulls the tokens
  /// with transferFrom (approve first, or use `lockWithPermit`).
  /// @dev Rejections: ZeroAmount; AmountTooLarge (> uint96 max); DeadlinePassed (block.timestamp >
  /// deadline); PayeeRefused (payee is zero); SettlementClosed (a decision was executed); the
  /// token's own errors from transferFrom.
  function lock(
    bytes32 settlementId,
    uint8 legIndex,
    address token,
    uint256 amount,
    address payee,
    uint64 deadline,
    bytes32 termsHash
  ) external notInside {
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash);
  }

  /// @notice `lock` preceded by an EIP-2612 permit for exactly `amount`, so no approve transaction
  /// is needed. A permit that fails (e.g. front-run with the same signature) is ignored: if the
  /// allowance is there the lock proceeds, otherwise transferFrom reverts.
  function lockWithPermit(
    bytes32 settlementId,
    uint8 legIndex,
    address token,
    uint256 amount,
    address payee,
    uint64 deadline,
    bytes32 termsHash,
    uint256 permitDeadline,
    uint8 v,
    bytes32 r,
    bytes32 s
  ) external notInside {
    try IERC20Permit(token).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {} catch {}
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash);
  }

  /// @notice `lockWithPermit` with its arguments packed into words (less calldata); the permit must
  /// be signed with the lock's deadline as its own.
  ///   w0     = token | amount << 160
  ///   packed = payee | deadline << 160 (40 bits) | legIndex << 200 | v << 208
  function lockWithPermitPacked(
    bytes32 settlementId,
    bytes32 termsHash,
    uint256 w0,
    uint256 packed,
    bytes32 r,
    bytes32 s
  ) external notInside {
    address token = address(uint160(w0));
    uint256 amount = w0 >> 160;
    uint64 deadline = uint64((packed >> 160) & 0xffffffffff);
    // permit(owner, spender, value, deadline, v, r, s); a failure is ignored as in lockWithPermit.
    assembly ("memory-safe") {
      let m := mload(0x40)
      mstore(m, shl(224, 0xd505accf))
      mstore(add(m, 0x04), caller())
      mstore(add(m, 0x24), address())
      mstore(add(m, 0x44), amount)
      mstore(add(m, 0x64), deadline)
      mstore(add(m, 0x84), and(shr(208, packed), 0xff))
      mstore(add(m, 0xa4), r)
      mstore(add(m, 0xc4), s)
      pop(call(gas(), token, 0, m, 0xe4, 0, 0))
    }
    _lock(settlementId, uint8(packed >> 200), token, amount, address(uint160(packed)), deadline, termsHash);
  }

  function _lock(
    bytes32 settlementId,
    uint8 legIndex,
    address token,
    uint256 amount,
    address payee,
    uint64 deadline,
    bytes32 termsHash
  ) private {
    if (amount == 0) revert ZeroAmount();
    if (amount > type(uint96).max) revert AmountTooLarge(amount);
    if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
    if (payee == address(0)) revert PayeeRefused(token, payee);
    uint256 w0 = uint160(token) | (amount << 160);
    uint256 w1 = uint160(msg.sender) |
      (uint256(deadline) << 160) |
      (uint256(legIndex) << 224) |
      (uint256(LockState.Locked) << 232);
    uint256 head = _heads[settlementId];
    if (head & _CLOSED != 0) revert SettlementClosed(settlementId);
    // Effects before the pull: a token re-entering `lock` appends after this record.
    uint256 m = _buffer();
    assembly ("memory-safe") {
      mstore(add(m, 0x20), w0)
      mstore(add(m, 0x40), w1)
      mstore(add(m, 0x60), and(payee, sub(shl(160, 1), 1)))
      mstore(add(m, 0x80), termsHash)
    }
    _heads[settlementId] = _link(head, m);
    emit Locked(settlementId, legIndex, token, msg.sender, payee, amount, deadline, termsHash);
    _pull(token, msg.sender, amount);
  }

  /// @dev transferFrom(from, escrow, amount) that bubbles the token's own revert and accepts tokens
  /// that return nothing, as SafeERC20 does, without copying return data to memory.
  function _pull(address token, address from, uint256 amount) private {
    bool ok;
    assembly ("memory-safe") {
      let m := mload(0x40)
      mstore(m, shl(224, 0x23b872dd)) // transferFrom(address,address,uint256)
      mstore(add(m, 0x04), and(from, sub(shl(160, 1), 1)))
      mstore(add(m, 0x24), address())
      mstore(add(m, 0x44), amount)
      ok := call(gas(), token, 0, m, 0x64, 0x00, 0x20)
      if iszero(ok) {
        returndatacopy(m, 0, returndatasize())
        revert(m, returndatasize())
      }
      ok := or(
        and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)),
        and(iszero(returndatasize()), gt(extcodesize(token), 0))
      )
    }
    if (!ok) revert SafeERC20.SafeERC20FailedOperation(token);
  }

  // ------------------------------------------------------------------------------------------------
  // report intake
  // ------------------------------------------------------------------------------------------------

  /// @notice IReceiver. Inside `deliver` (the payload is the one being forwarded) it only accepts
  /// the report. Called any other way, each SETTLE/ABORT item of a settlement with open records is
  /// recorded pending for `execute`.
  /// @dev Rejections (the forwarder records the delivery as failed): UnauthorizedForwarder;
  /// MalformedMetadata; InvalidWorkflowId / InvalidWorkflowOwner / InvalidWorkflowName; a payload
  /// that is not the canonical abi.encode((bytes32,bytes32,uint8)[]) (empty revert).
  function onReport(bytes calldata metadata, bytes calldata report) external {
    if (msg.sender != forwarder) revert UnauthorizedForwarder(msg.sender);
    if (metadata.length != _METADATA_LENGTH) revert MalformedMetadata();
    bytes32 id = bytes32(metadata[0:32]);
    if (id != workflowId) revert InvalidWorkflowId(id);
    address owner = address(bytes20(metadata[42:62]));
    if (owner != workflowOwner) revert InvalidWorkflowOwner(owner);
    bytes10 name = bytes10(metadata[32:42]);
    if (name != workflowName) revert InvalidWorkflowName(name);
    (uint256 base, uint256 n) = _items(report);
    uint256 expect = _tload(_T_EXPECT);
    if (expect != 0 && uint256(_hashCalldata(report)) == expect) {
      _tstore(_T_ACCEPTED, 1);
      return;
    }
    // Not the forwarded payload while an escrow operation runs (a token callback): refuse.
    if (_tload(_T_GUARD) != 0) revert Reentrant();
    for (uint256 i; i < n; ) {
      (bytes32 settlementId, bytes32 termsHash, uint8 decision) = _item(base, i);
      uint256 head = _heads[settlementId];
      if (decision != _SETTLE && decision != _ABORT) {
        emit ItemSkipped(settlementId, termsHash, decision, _SKIP_INVALID_DECISION);
      } else if (head == 0) {
        emit ItemSkipped(settlementId, termsHash, decision, _SKIP_UNKNOWN);
      } else if (head == _CLOSED) {
        emit ItemSkipped(settlementId, termsHash, decision, _SKIP_FINAL);
      } else {
        _recordPending(settlementId, termsHash, decision);
      }
      unchecked {
        ++i;
      }
    }
  }

  /// @notice Transmit a DON report through the KeystoneForwarder and execute it with the
  /// settlements' records. `records`, for each report item in order: one byte k, then the
  /// settlement's k open records in list order, each packed without ABI padding as
  ///   amount(12) token(20) | state(1) leg(1) deadline(8) locker(20) | payee(20) | f(1) [termsHash(32)]
  /// with f = 1 when the record's terms hash is the item's (then omitted) and f = 0 when it follows.
  /// @dev Reverts, consuming nothing, if the forwarder did not hand this payload to `onReport` (the
  /// report was already transmitted, bad signatures, too little gas: ReportNotAccepted or the
  /// forwarder's own error), or if `records` does not parse (MalformedRecords). An item whose
  /// records do not match the head is recorded pending, never dropped.
  function deliver(
    bytes calldata rawReport,
    bytes calldata reportContext,
    bytes[] calldata signatures,
    bytes calldata records
  ) external guarded {
    if (rawReport.length < _RAW_HEADER) revert MalformedMetadata();
    bytes calldata payload = rawReport[_RAW_HEADER:];
    _tstore(_T_EXPECT, uint256(_hashCalldata(payload)));
    IKeystoneForwarderReport(forwarder).report(address(this), rawReport, reportContext, signatures);
    if (_tload(_T_ACCEPTED) == 0) revert ReportNotAccepted();
    _tstore(_T_ACCEPTED, 0);
    _tstore(_T_EXPECT, 0);
    (uint256 base, uint256 n) = _items(payload);
    uint256 p;
    uint256 end;
    assembly {
      p := records.offset
      end := add(p, records.length)
    }
    for (uint256 i; i < n; ) {
      (bytes32 settlementId, bytes32 termsHash, uint8 decision) = _item(base, i);
      if (p >= end) revert MalformedRecords();
      uint256 k;
      assembly {
        k := byte(0, calldataload(p))
      }
      p += 1;
      uint256 next = _skip(p, end, k);
      uint256 head = _heads[settlementId];
      if (decision != _SETTLE && decision != _ABORT) {
        emit ItemSkipped(settlementId, termsHash, decision, _SKIP_INVALID_DECISION);
      } else if (head == 0) {
        emit ItemSkipped(settlementId, termsHash, decision, _SKIP_UNKNOWN);
      } else if (!_apply(settlementId, termsHash, decision, head, p, k)) {
        _recordPending(settlementId, termsHash, decision);
      }
      p = next;
      unchecked {
        ++i;
      }
    }
    if (p != end) revert MalformedRecords();
  }

  /// @notice Finish a decision recorded pending, with the settlement's open records (packed as in
  /// `deliver`, without the count byte).
  /// @dev Rejections: NoPendingDecision; StaleRecords (the records are not the settlement's open
  /// list); MalformedRecords.
  function execute(bytes32 settlementId, bytes32 termsHash, bytes calldata records) external guarded {
    uint256 decision = _pending[_pendingKey(settlementId, termsHash)];
    if (decision == 0) revert NoPendingDecision(settlementId, termsHash);
    (uint256 p, uint256 k) = _countAll(records);
    if (!_apply(settlementId, termsHash, uint8(decision), _heads[settlementId], p, k)) {
      revert StaleRecords(settlementId);
    }
  }

  /// @dev Checks the canonical abi.encode((bytes32,bytes32,uint8)[]) layout (reverts empty, as
  /// abi.decode would) and returns where the items start and how many there are.
  function _items(bytes calldata report) private pure returns (uint256 base, uint256 n) {
    assembly ("memory-safe") {
      base := report.offset
      n := calldataload(add(base, 0x20))
      if or(lt(report.length, 0x40), or(iszero(eq(calldataload(base), 0x20)), gt(n, 0xffffffff))) {
        revert(0, 0)
      }
      if iszero(eq(report.length, add(0x40, mul(n, 0x60)))) {
        revert(0, 0)
      }
    }
  }

  function _item(uint256 base, uint256 i) private pure returns (bytes32 settlementId, bytes32 termsHash, uint8 decision) {
    uint256 d;
    assembly ("memory-safe") {
      let item := add(add(base, 0x40), mul(i, 0x60))
      settlementId := calldataload(item)
      termsHash := calldataload(add(item, 0x20))
      d := calldataload(add(item, 0x40))
      if gt(d, 0xff) {
        revert(0, 0)
      }
    }
    decision = uint8(d);
  }

  function _pendingKey(bytes32 settlementId, bytes32 termsHash) private pure returns (bytes32 key) {
    assembly ("memory-safe") {
      mstore(0x00, settlementId)
      mstore(0x20, termsHash)
      key := keccak256(0x00, 0x40)
    }
  }

  function _recordPending(bytes32 settlementId, bytes32 termsHash, uint8 decision) private {
    bytes32 key = _pendingKey(settlementId, termsHash);
    if (_pending[key] == 0) {
      _pending[key] = decision;
      emit DecisionPending(settlementId, termsHash, decision);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // records
  // ------------------------------------------------------------------------------------------------

  /// @dev A record buffer in memory laid out as the chain link's preimage: [h, w0, w1, w2, w3]
  /// (h is written by `_link`), so reading, linking and digesting need no copies.
  function _buffer() private pure returns (uint256 m) {
    assembly ("memory-safe") {
      m := mload(0x40)
      mstore(0x40, add(m, 0xa0))
    }
  }

  /// @dev Reads the packed record at `p` into buffer `m` (`itemTerms` stands in for an omitted
  /// terms hash) and returns where the next record starts.
  function _read(uint256 m, uint256 p, bytes32 itemTerms) private pure returns (uint256 next) {
    assembly ("memory-safe") {
      mstore(add(m, 0x20), calldataload(p))
      mstore(add(m, 0x40), shr(16, calldataload(add(p, 32))))
      mstore(add(m, 0x60), shr(96, calldataload(add(p, 62))))
      switch byte(0, calldataload(add(p, 82)))
      case 1 {
        mstore(add(m, 0x80), itemTerms)
        next := add(p, 83)
      }
      case 0 {
        mstore(add(m, 0x80), calldataload(add(p, 83)))
        next := add(p, 115)
      }
      default {
        revert(0, 0)
      }
    }
  }

  /// @dev Word `i` (0..3) of the record in buffer `m`.
  function _w(uint256 m, uint256 i) private pure returns (uint256 v) {
    assembly ("memory-safe") {
      v := mload(add(m, mul(add(i, 1), 0x20)))
    }
  }

  /// @dev Where `k` packed records starting at `p` end (MalformedRecords past `end`).
  function _skip(uint256 p, uint256 end, uint256 k) private pure returns (uint256) {
    for (uint256 j; j < k; ) {
      uint256 f;
      assembly {
        f := byte(0, calldataload(add(p, 82)))
      }
      p += f == 1 ? _REC_SHORT : _REC_LONG;
      unchecked {
        ++j;
      }
    }
    if (p > end) revert MalformedRecords();
    return p;
  }

  /// @dev Offset and count of the packed records filling `records` exactly.
  function _countAll(bytes calldata records) private pure returns (uint256 p0, uint256 k) {
    uint256 end;
    assembly {
      p0 := records.offset
      end := add(p0, records.length)
    }
    uint256 p = p0;
    while (p < end) {
      uint256 f;
      assembly {
        f := byte(0, calldataload(add(p, 82)))
      }
      p += f == 1 ? _REC_SHORT : _REC_LONG;
      unchecked {
        ++k;
      }
    }
    if (p != end) revert MalformedRecords();
  }

  /// @dev The chain extended by the record in buffer `m` (lowest bit cleared: the head's closed
  /// flag lives there).
  function _link(uint256 h, uint256 m) private pure returns (uint256 r) {
    assembly ("memory-safe") {
      mstore(m, and(h, not(1)))
      r := and(keccak256(m, 0xa0), not(1))
    }
  }

  /// @dev The digest the events name the record in buffer `m` by: keccak256(w0, w1, w2, w3).
  function _digest(uint256 m) private pure returns (bytes32 d) {
    assembly ("memory-safe") {
      d := keccak256(add(m, 0x20), 0x80)
    }
  }

  function _hashCalldata(bytes calldata data) private pure returns (bytes32 h) {
    assembly ("memory-safe") {
      let m := mload(0x40)
      calldatacopy(m, data.offset, data.length)
      h := keccak256(m, data.length)
    }
  }

  /// @dev What an item does to the record in buffer `m`: 0 keep it open, 1 pay the payee, 2 refund
  /// the locker. `seen` has bit `leg` set once that leg's record was paid under SETTLE (later
  /// records of the leg are refunded).
  function _action(
    uint256 m,
    bytes32 termsHash,
    bool settle,
    uint256 seen
  ) private pure returns (uint256 action, uint256) {
    uint256 w1 = _w(m, 1);
    if (w1 >> 232 != uint256(LockState.Locked) || bytes32(_w(m, 3)) != termsHash) return (0, seen);
    if (!settle) return (2, seen);
    uint256 bit = uint256(1) << ((w1 >> 224) & 0xff);
    if (seen & bit != 0) return (2, seen);
    return (1, seen | bit);
  }

  /// @dev Executes `decision` for `termsHash` over the k records at `p` if they hash to `head`;
  /// returns false (nothing done) if they do not. The new head (the records left open, then the
  /// refused payouts appended as owed; closed) is written before any token call.
  function _apply(
    bytes32 settlementId,
    bytes32 termsHash,
    uint8 decision,
    uint256 head,
    uint256 p,
    uint256 k
  ) private returns (bool) {
    bool settle = decision == _SETTLE;
    uint256 m = _buffer();
    uint256 hKeep;
    uint256 scan;
    {
      uint256 hAll;
      (hAll, hKeep, scan) = _scan(m, termsHash, settle, p, k);
      if (hAll != head & ~_CLOSED) return false;
    }
    if (scan >> 1 != 0) {
      _heads[settlementId] = hKeep | _CLOSED;
      _executeAll(m, settlementId, termsHash, settle, hKeep, p, k);
    }
    if (scan & 1 != 0) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_TERMS_MISMATCH);
    else if (scan >> 1 == 0) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_FINAL);
    return true;
  }

  /// @dev Pass 1 over the k records at `p`: the chain over all of them, the chain over those the
  /// item leaves open, and `scan` = (records executed) << 1 | (a Locked record names other terms).
  function _scan(
    uint256 m,
    bytes32 termsHash,
    bool settle,
    uint256 p,
    uint256 k
  ) private pure returns (uint256 hAll, uint256 hKeep, uint256 scan) {
    uint256 seen;
    for (uint256 j; j < k; ) {
      p = _read(m, p, termsHash);
      hAll = _link(hAll, m);
      uint256 action;
      (action, seen) = _action(m, termsHash, settle, seen);
      if (action != 0) {
        scan += 2;
      } else {
        if (_w(m, 1) >> 232 == uint256(LockState.Locked)) scan |= 1;
        hKeep = _link(hKeep, m);
      }
      unchecked {
        ++j;
      }
    }
  }

  /// @dev Pass 2: pays or refunds each record the item acts on. A refused payout appends the
  /// record, now owed, to `hKeep` (the head already written), and the head is rewritten once.
  function _executeAll(
    uint256 m,
    bytes32 settlementId,
    bytes32 termsHash,
    bool settle,
    uint256 hKeep,
    uint256 p,
    uint256 k
  ) private {
    uint256 seen;
    bool anyOwed;
    for (uint256 j; j < k; ) {
      p = _read(m, p, termsHash);
      uint256 action;
      (action, seen) = _action(m, termsHash, settle, seen);
      if (action != 0 && !_payout(m, settlementId, action)) {
        hKeep = _link(hKeep, m); // the record, now owed (`_payout` rewrote its state)
        anyOwed = true;
      }
      unchecked {
        ++j;
      }
    }
    if (anyOwed) _heads[settlementId] = hKeep | _CLOSED;
  }

  /// @dev Pays the record in buffer `m` to its payee (action 1) or refunds its locker (action 2).
  /// If the token refuses, sets the record's state to owed in the buffer and returns false.
  function _payout(uint256 m, bytes32 settlementId, uint256 action) private returns (bool) {
    bytes32 record = _digest(m);
    uint256 w0 = _w(m, 0);
    uint256 w1 = _w(m, 1);
    address to = action == 1 ? address(uint160(_w(m, 2))) : address(uint160(w1));
    if (_tryTransfer(address(uint160(w0)), to, w0 >> 160)) {
      if (action == 1) emit Settled(settlementId, uint8(w1 >> 224), to, w0 >> 160, record);
      else emit Aborted(settlementId, uint8(w1 >> 224), to, w0 >> 160, record);
      return true;
    }
    LockState state = action == 1 ? LockState.SettleOwed : LockState.AbortOwed;
    w1 = (w1 & ~(uint256(0xff) << 232)) | (uint256(state) << 232);
    assembly ("memory-safe") {
      mstore(add(m, 0x40), w1)
    }
    emit Owed(settlementId, uint8(w1 >> 224), to, w0 >> 160, state, record);
    return false;
  }

  /// @dev ERC-20 transfer that reports failure instead of reverting (reverts, returns false, or runs
  /// out of its gas cap), so that one refusal cannot revert a batch.
  function _tryTransfer(address token, address to, uint256 amount) private returns (bool ok) {
    uint256 left = gasleft();
    if (left < _PAYOUT_GAS_NEEDED) revert InsufficientGas(left, _PAYOUT_GAS_NEEDED);
    assembly ("memory-safe") {
      let m := mload(0x40)
      mstore(m, shl(224, 0xa9059cbb)) // transfer(address,uint256)
      mstore(add(m, 0x04), and(to, sub(shl(160, 1), 1)))
      mstore(add(m, 0x24), amount)
      ok := call(_PAYOUT_GAS, token, 0, m, 0x44, 0x00, 0x20)
      ok := and(
        ok,
        or(
          and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)),
          and(iszero(returndatasize()), gt(extcodesize(token), 0))
        )
      )
    }
  }

  /// @dev Finds record `index` of `records` (packed, terms hash always included), checks the whole
  /// list against the head, and returns the record in a buffer with the new head: the list without
  /// it, closed flag kept.
  function _take(
    bytes32 settlementId,
    bytes calldata records,
    uint256 index
  ) private view returns (uint256 taken, uint256 newHead) {
    (uint256 p, uint256 k) = _countAll(records);
    if (index >= k) revert MalformedRecords();
    uint256 m = _buffer();
    taken = _buffer();
    uint256 hAll;
    for (uint256 j; j < k; ) {
      p = _read(j == index ? taken : m, p, bytes32(0));
      if (j == index) {
        hAll = _link(hAll, taken);
      } else {
        hAll = _link(hAll, m);
        newHead = _link(newHead, m);
      }
      unchecked {
        ++j;
      }
    }
    uint256 head = _heads[settlementId];
    if (hAll != head & ~_CLOSED) revert StaleRecords(settlementId);
    newHead |= head & _CLOSED;
  }

  // ------------------------------------------------------------------------------------------------
  // claim / reclaim
  // ------------------------------------------------------------------------------------------------

  /// @notice Pay owed record `index` of the settlement's open `records` (packed as in `deliver`,
  /// terms hash always included) to its beneficiary: the payee if SettleOwed, the locker if
  /// AbortOwed. Anyone may call it; the tokens only ever go to the beneficiary.
  /// @dev Rejections: StaleRecords; MalformedRecords; NothingOwed; the token's own error while it
  /// still refuses the transfer (the record then stays owed).
  function claim(bytes32 settlementId, bytes calldata records, uint256 index) external guarded {
    (uint256 m, uint256 newHead) = _take(settlementId, records, index);
    uint256 w0 = _w(m, 0);
    uint256 w1 = _w(m, 1);
    LockState state = LockState(uint8(w1 >> 232));
    address to;
    if (state == LockState.SettleOwed) to = address(uint160(_w(m, 2)));
    else if (state == LockState.AbortOwed) to = address(uint160(w1));
    else revert NothingOwed(state);
    _heads[settlementId] = newHead;
    emit Claimed(settlementId, uint8(w1 >> 224), to, w0 >> 160, _digest(m));
    IERC20(address(uint160(w0))).safeTransfer(to, w0 >> 160);
  }

  /// @notice The locker takes back Locked record `index` of the settlement's open `records` once
  /// block.timestamp > deadline + grace, unless a decision under its terms is pending.
  /// @dev Rejections: StaleRecords; MalformedRecords; NotReclaimable (not Locked); NotLocker;
  /// ReclaimTooEarly(availableAt); DecisionIsPending (call `execute`); the token's own error.
  function reclaim(bytes32 settlementId, bytes calldata records, uint256 index) external guarded {
    (uint256 m, uint256 newHead) = _take(settlementId, records, index);
    uint256 w0 = _w(m, 0);
    uint256 w1 = _w(m, 1);
    LockState state = LockState(uint8(w1 >> 232));
    if (state != LockState.Locked) revert NotReclaimable(state);
    address locker = address(uint160(w1));
    if (msg.sender != locker) revert NotLocker(msg.sender);
    uint256 availableAt = uint256(uint64(w1 >> 160)) + grace + 1;
    if (block.timestamp < availableAt) revert ReclaimTooEarly(availableAt);
    bytes32 terms = bytes32(_w(m, 3));
    if (_pending[_pendingKey(settlementId, terms)] != 0) revert DecisionIsPending(settlementId, terms);
    _heads[settlementId] = newHead;
    emit Reclaimed(settlementId, uint8(w1 >> 224), locker, w0 >> 160, _digest(m));
    IERC20(address(uint160(w0))).safeTransfer(locker, w0 >> 160);
  }

  // ------------------------------------------------------------------------------------------------
  // views
  // ------------------------------------------------------------------------------------------------

  /// @notice The settlement's head: 0 if it has no open record and is not closed; otherwise the
  /// chain over its open records with the lowest bit set once a decision was executed.
  function settlementHead(bytes32 settlementId) external view returns (uint256) {
    return _heads[settlementId];
  }

  /// @notice True iff `records` (packed, terms hash always included) is exactly the settlement's
  /// open record list.
  function recordsMatch(bytes32 settlementId, bytes calldata records) external view returns (bool) {
    (uint256 p, uint256 k) = _countAll(records);
    uint256 m = _buffer();
    uint256 h;
    for (uint256 j; j < k; ) {
      p = _read(m, p, bytes32(0));
      h = _link(h, m);
      unchecked {
        ++j;
      }
    }
    return h == _heads[settlementId] & ~_CLOSED;
  }

  /// @notice The digest the events name a record by: keccak256(w0, w1, w2, w3).
  function recordDigest(uint256 w0, uint256 w1, address payee, bytes32 termsHash) external pure returns (bytes32) {
    return keccak256(abi.encode(w0, w1, payee, termsHash));
  }

  /// @notice The decision recorded pending for (settlementId, termsHash): 0 none, 1 SETTLE, 2 ABORT.
  function pendingDecision(bytes32 settlementId, bytes32 termsHash) external view returns (uint8) {
    return uint8(_pending[_pendingKey(settlementId, termsHash)]);
  }

  /// @notice ERC-165: IReceiver (so the forwarder routes reports here) and IERC165.
  function supportsInterface(bytes4 interfaceId) external pure override returns (bool) {
    return interfaceId == type(IReceiver).interfaceId || interfaceId == type(IERC165).interfaceId;
  }

  function _tload(uint256 slot) private view returns (uint256 v) {
    assembly ("memory-safe") {
      v := tload(slot)
    }
  }

  function _tstore(uint256 slot, uint256 v) private {
    assembly ("memory-safe") {
      tstore(slot, v)
    }
  }
}
