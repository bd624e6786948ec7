// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IReceiver} from "@chainlink/contracts/src/v0.8/keystone/interfaces/IReceiver.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC165} from "@openzeppelin/contracts@5.0.2/utils/introspection/IERC165.sol";

interface IKeystoneForwarderReport {
  function report(address receiver, bytes calldata rawReport, bytes calldata reportContext, bytes[] calldata signatures) external;
}

/// @title DvPEscrow (design R3, "ring3": ring2 + a packed-calldata lockWithPermit fast path)
/// @notice As commit2 (hash-chained lock records, fields supplied at execution through `deliver`),
/// but the chain lives in a slot the locker chooses from its own numbered slots, `headRef` =
/// locker | k << 160, instead of a slot keyed by settlementId. A slot that was used before and freed
/// (value FREE = 1) is rewritten from non-zero to non-zero (~5k gas instead of ~22k for a fresh slot).
/// The chain starts at the settlementId: h_0 = settlementId, h_k = keccak(h_{k-1}, w0, w1, w2, w3),
/// so a head is bound to its settlement. When the last open record of a head is final the slot goes
/// back to FREE (no refund: it is kept warm for reuse).
///   - A locker opens a head in one of its own slots (value 0 or FREE); anyone appends a leg to an
///     open head (`headRef` of another locker, or its own open head).
///   - SAFETY PRECONDITION (off-chain, oracle side): the escrow cannot see which head(s) hold a
///     settlement's legs. The oracle must treat a settlement as locked (and decide SETTLE) only if
///     all its legs on this escrow sit in ONE head (the first one opened for it, per the Locked
///     events); a leg locked elsewhere is not a valid lock (it is reclaimable after the grace).
///   - The escrow cannot tell "no lock here" from "wrong headRef supplied", so `deliver` records an
///     item pending (fresh slot) whenever the supplied head does not verify, and `onReport` reached
///     directly records every SETTLE/ABORT item pending.
contract DvPEscrow is IReceiver {
  using SafeERC20 for IERC20;

  enum LockState { None, Locked, Settled, Aborted, Reclaimed, SettleOwed, AbortOwed }

  uint8 private constant _SETTLE = 1;
  uint8 private constant _ABORT = 2;
  uint8 private constant _SKIP_UNKNOWN = 1;
  uint8 private constant _SKIP_FINAL = 2;
  uint8 private constant _SKIP_TERMS_MISMATCH = 3;
  uint8 private constant _SKIP_INVALID_DECISION = 4;

  uint256 private constant _METADATA_LENGTH = 64;
  uint256 private constant _RAW_HEADER = 109; // forwarder metadata before the payload
  uint256 private constant _PAYOUT_GAS = 150_000;
  uint256 private constant _PAYOUT_GAS_NEEDED = (_PAYOUT_GAS * 64) / 63 + 5_000;

  // transient slots
  uint256 private constant _T_EXPECT = 0x1001; // keccak(payload) deliver is forwarding
  uint256 private constant _T_DONE = 0x1002; // onReport accepted it
  uint256 private constant _T_GUARD = 0x1003; // reentrancy guard

  address public immutable forwarder;
  address public immutable workflowOwner;
  bytes10 public immutable workflowName;
  bytes32 public immutable workflowId;
  uint64 public immutable grace;

  /// @dev headRef (locker | k << 160) => 0 never used, FREE reusable, else an open head.
  mapping(bytes32 headRef => bytes32) private _heads;
  bytes32 private constant _FREE = bytes32(uint256(1));
  /// @dev keccak(settlementId, termsHash) => decision (1 SETTLE, 2 ABORT) recorded without records.
  mapping(bytes32 key => uint256) private _pending;

  /// @notice Slim events: the lock record's words as stored in the chain (w0 = token | amount << 160,
  /// w1 = locker | deadline << 160 | leg << 224 | state << 232), payee and termsHash.
  event Locked(bytes32 indexed settlementId, bytes32 indexed headRef, uint256 w0, uint256 w1, address payee, bytes32 termsHash);
  /// @notice Slim: payee/locker and amount are in the token's own Transfer event of the same call.
  event Settled(bytes32 indexed settlementId, uint8 legIndex);
  event Aborted(bytes32 indexed settlementId, uint8 legIndex);
  event Owed(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed beneficiary, uint256 amount);
  event Claimed(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed beneficiary, uint256 amount);
  event Reclaimed(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed locker, uint256 amount);
  event ItemSkipped(bytes32 indexed settlementId, bytes32 termsHash, uint8 decision, uint8 reason);
  /// @notice A decision recorded without (matching) lock records; `execute` finishes it.
  event DecisionPending(bytes32 indexed settlementId, bytes32 termsHash, uint8 decision);

  error ZeroAmount();
  error AmountTooLarge(uint256 amount);
  error DeadlinePassed(uint64 deadline, uint256 blockTimestamp);
  error PayeeRefused(address token, address payee);
  error UnauthorizedForwarder(address sender);
  error InvalidWorkflowId(bytes32 received);
  error InvalidWorkflowName(bytes10 received);
  error InvalidWorkflowOwner(address received);
  error MalformedMetadata();
  error NotLocker(address caller);
  error ReclaimTooEarly(uint256 availableAt);
  error NotReclaimable(LockState state);
  error NothingOwed(LockState state);
  error InsufficientGas(uint256 gasLeft, uint256 needed);
  error StaleRecords(bytes32 settlementId);
  error NoPendingDecision(bytes32 settlementId, bytes32 termsHash);
  error DecisionIsPending(bytes32 settlementId, bytes32 termsHash);
  error ReportNotAccepted();
  error Reentrant();
  error MalformedRecords();
  error NotYourSlot(bytes32 headRef);

  constructor(address forwarder_, address workflowOwner_, bytes10 workflowName_, bytes32 workflowId_, uint64 grace_) {
    forwarder = forwarder_;
    workflowOwner = workflowOwner_;
    workflowName = workflowName_;
    workflowId = workflowId_;
    grace = grace_;
  }

  modifier guarded() {
    if (_tload(_T_GUARD) != 0) revert Reentrant();
    _tstore(_T_GUARD, 1);
    _;
    _tstore(_T_GUARD, 0);
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

  // ------------------------------------------------------------------------------------------------
  // lock
  // ------------------------------------------------------------------------------------------------

  /// @dev Locks only check the guard (no escrow state is touched after the pull, so a token
  /// re-entering `lock` is harmless; a lock re-entered from a payout of `deliver` is refused).
  modifier notInside() {
    if (_tload(_T_GUARD) != 0) revert Reentrant();
    _;
  }

  function lock(bytes32 settlementId, uint8 legIndex, address token, uint256 amount, address payee, uint64 deadline, bytes32 termsHash, bytes32 headRef) external notInside {
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash, headRef);
  }

  function lockWithPermit(bytes32 settlementId, uint8 legIndex, address token, uint256 amount, address payee, uint64 deadline, bytes32 termsHash, bytes32 headRef, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s) external notInside {
    // permit(owner, spender, value, deadline, v, r, s); a failure is ignored (as try/catch did)
    assembly ("memory-safe") {
      let m := mload(0x40)
      mstore(m, shl(224, 0xd505accf))
      mstore(add(m, 0x04), caller())
      mstore(add(m, 0x24), address())
      mstore(add(m, 0x44), amount)
      mstore(add(m, 0x64), permitDeadline)
      mstore(add(m, 0x84), and(v, 0xff))
      mstore(add(m, 0xa4), r)
      mstore(add(m, 0xc4), s)
      pop(call(gas(), token, 0, m, 0xe4, 0, 0))
    }
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash, headRef);
  }

  /// @notice `lockWithPermit` with packed arguments, into the caller's own slot k (open a head, or
  /// append to its own open head); the permit is signed with the lock's deadline as its deadline.
  ///   w0     = token | amount << 160
  ///   packed = payee | deadline << 160 (uint40) | legIndex << 200 | v << 208 | k << 216 (uint32)
  function lockWithPermitPacked(bytes32 settlementId, bytes32 termsHash, uint256 w0, uint256 packed, bytes32 r, bytes32 s) external notInside {
    address token = address(uint160(w0));
    uint256 amount = w0 >> 160;
    uint64 deadline = uint64((packed >> 160) & 0xffffffffff);
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
    bytes32 headRef = bytes32(uint256(uint160(msg.sender)) | ((packed >> 216) << 160));
    _lock(settlementId, uint8(packed >> 200), token, amount, address(uint160(packed)), deadline, termsHash, headRef);
  }

  /// @dev No LockExists: a (settlementId, legIndex) may be locked more than once; every record is a
  /// separate consent and is executed (or reclaimed) on its own.
  function _lock(bytes32 settlementId, uint8 legIndex, address token, uint256 amount, address payee, uint64 deadline, bytes32 termsHash, bytes32 headRef) private {
    if (amount == 0) revert ZeroAmount();
    if (amount > type(uint96).max) revert AmountTooLarge(amount);
    if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
    if (payee == address(0)) revert PayeeRefused(token, payee);
    if (_CHECK_PAYEE && _refuses(token, payee, amount)) revert PayeeRefused(token, payee);
    uint256 w0 = uint160(token) | (amount << 160);
    uint256 w1 = uint160(msg.sender) | (uint256(deadline) << 160) | (uint256(legIndex) << 224) | (uint256(1) << 232);
    bytes32 prev = _heads[headRef];
    if (prev == 0 || prev == _FREE) {
      // open a new head: only in one's own slots
      if (address(uint160(uint256(headRef))) != msg.sender) revert NotYourSlot(headRef);
      prev = settlementId;
    }
    _heads[headRef] = _link(prev, w0, w1, uint160(payee), termsHash);
    emit Locked(settlementId, headRef, w0, w1, payee, termsHash);
    _pull(token, msg.sender, amount);
  }

  bool private constant _CHECK_PAYEE = false;

  function _pull(address token, address from, uint256 amount) private {
    bool ok;
    assembly ("memory-safe") {
      let m := mload(0x40)
      mstore(m, shl(224, 0x23b872dd))
      mstore(add(m, 0x04), and(from, sub(shl(160, 1), 1)))
      mstore(add(m, 0x24), address())
      mstore(add(m, 0x44), amount)
      ok := call(gas(), token, 0, m, 0x64, 0x00, 0x20)
      if iszero(ok) {
        returndatacopy(m, 0, returndatasize())
        revert(m, returndatasize())
      }
      ok := or(and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)), and(iszero(returndatasize()), gt(extcodesize(token), 0)))
    }
    if (!ok) revert SafeERC20.SafeERC20FailedOperation(token);
  }

  function _refuses(address token, address payee, uint256 amount) private view returns (bool refused) {
    bytes memory data = abi.encodeWithSignature("canTransfer(address,address,uint256)", address(this), payee, amount);
    assembly ("memory-safe") {
      let ok := staticcall(gas(), token, add(data, 0x20), mload(data), 0x00, 0x20)
      refused := and(ok, and(gt(returndatasize(), 0x1f), iszero(mload(0x00))))
    }
  }

  // ------------------------------------------------------------------------------------------------
  // report intake
  // ------------------------------------------------------------------------------------------------

  /// @notice IReceiver. Inside `deliver` (the payload is the one being forwarded) it only accepts the
  /// report; otherwise each SETTLE/ABORT item of a settlement with open locks is recorded pending.
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
    bool forwarding;
    assembly ("memory-safe") {
      let expect := tload(_T_EXPECT)
      if expect {
        let m := mload(0x40)
        calldatacopy(m, report.offset, report.length)
        forwarding := eq(keccak256(m, report.length), expect)
      }
    }
    if (forwarding) {
      _tstore(_T_DONE, 1);
      return;
    }
    // Not forwarding while another escrow operation runs (a token callback): refuse.
    if (_tload(_T_GUARD) != 0) revert Reentrant();
    for (uint256 i; i < n; ) {
      (bytes32 settlementId, bytes32 termsHash, uint8 decision) = _item(base, i);
      if (decision != _SETTLE && decision != _ABORT) {
        emit ItemSkipped(settlementId, termsHash, decision, _SKIP_INVALID_DECISION);
      } else {
        _recordPending(settlementId, termsHash, decision); // heads are not findable by settlementId
      }
      unchecked { ++i; }
    }
  }

  /// @dev Checks the canonical abi.encode((bytes32,bytes32,uint8)[]) layout (reverts empty otherwise).
  function _items(bytes calldata report) private pure returns (uint256 base, uint256 n) {
    assembly ("memory-safe") {
      base := report.offset
      n := calldataload(add(base, 0x20))
      if or(lt(report.length, 0x40), or(iszero(eq(calldataload(base), 0x20)), gt(n, 0xffffffff))) { revert(0, 0) }
      if iszero(eq(report.length, add(0x40, mul(n, 0x60)))) { revert(0, 0) }
    }
  }

  function _item(uint256 base, uint256 i) private pure returns (bytes32 settlementId, bytes32 termsHash, uint8 decision) {
    uint256 d;
    assembly ("memory-safe") {
      let item := add(add(base, 0x40), mul(i, 0x60))
      settlementId := calldataload(item)
      termsHash := calldataload(add(item, 0x20))
      d := calldataload(add(item, 0x40))
      if gt(d, 0xff) { revert(0, 0) }
    }
    decision = uint8(d);
  }

  function _recordPending(bytes32 settlementId, bytes32 termsHash, uint8 decision) private {
    bytes32 key = keccak256(abi.encode(settlementId, termsHash));
    if (_pending[key] == 0) {
      _pending[key] = decision;
      emit DecisionPending(settlementId, termsHash, decision);
    }
  }

  /// @notice Transmit a DON report through the KeystoneForwarder and execute it with the settlements'
  /// lock records. `legData`, for each report item in order: one byte k, then the settlement's k open
  /// records in chain order [ring2: the count byte is followed by a 4-byte slot number k (the head's
  /// owner is then the first record's locker) or, with bit 7 of the count set, a 32-byte headRef],
  /// each record packed (no ABI padding) as
  ///   amount(12) token(20) | state(1) leg(1) deadline(8) locker(20) | payee(20) | f(1) [termsHash(32)]
  /// where f = 1 means "termsHash equals the item's" (omitted) and f = 0 means it follows.
  /// @dev Reverts if the forwarder did not hand this payload to `onReport` (e.g. AlreadyAttempted,
  /// bad signatures, too little gas): nothing is consumed then. An item whose records do not match
  /// the head is recorded pending, never dropped.
  function deliver(bytes calldata rawReport, bytes calldata reportContext, bytes[] calldata signatures, bytes calldata legData) external guarded {
    if (rawReport.length < _RAW_HEADER) revert MalformedMetadata();
    bytes calldata payload = rawReport[_RAW_HEADER:];
    assembly ("memory-safe") {
      let m := mload(0x40)
      calldatacopy(m, payload.offset, payload.length)
      tstore(_T_EXPECT, keccak256(m, payload.length))
    }
    IKeystoneForwarderReport(forwarder).report(address(this), rawReport, reportContext, signatures);
    if (_tload(_T_DONE) == 0) revert ReportNotAccepted();
    _tstore(_T_DONE, 0);
    _tstore(_T_EXPECT, 0);
    (uint256 base, uint256 n) = _items(payload);
    uint256 p;
    uint256 end;
    assembly {
      p := legData.offset
      end := add(p, legData.length)
    }
    for (uint256 i; i < n; ) {
      (bytes32 settlementId, bytes32 termsHash, uint8 decision) = _item(base, i);
      uint256 k;
      bytes32 headRef;
      assembly {
        if iszero(lt(p, end)) { revert(0, 0) }
        k := byte(0, calldataload(p))
        switch and(k, 0x80)
        case 0 {
          // k' = 4-byte slot number; the owner is the first record's locker (the head's opener)
          let slotNo := shr(224, calldataload(add(p, 1)))
          p := add(p, 5)
          let locker := and(shr(16, calldataload(add(p, 32))), sub(shl(160, 1), 1))
          headRef := or(locker, shl(160, slotNo))
        }
        default {
          headRef := calldataload(add(p, 1))
          p := add(p, 33)
          k := and(k, 0x7f)
        }
      }
      uint256 q = _skip(p, end, k); // end of this item's records
      if (decision != _SETTLE && decision != _ABORT) {
        emit ItemSkipped(settlementId, termsHash, decision, _SKIP_INVALID_DECISION);
      } else {
        bytes32 head = _heads[headRef];
        if (head == 0 || head == _FREE) _recordPending(settlementId, termsHash, decision);
        else _applyChecked(settlementId, headRef, termsHash, decision, head, p, k);
      }
      p = q;
      unchecked { ++i; }
    }
    if (p != end) revert MalformedRecords();
  }

  /// @notice Finish a pending decision with the settlement's current open records (packed, as in
  /// `deliver`, without the leading count byte).
  function execute(bytes32 settlementId, bytes32 headRef, bytes32 termsHash, bytes calldata recs) external guarded {
    uint256 decision = _pending[keccak256(abi.encode(settlementId, termsHash))];
    if (decision == 0) revert NoPendingDecision(settlementId, termsHash);
    (uint256 p, uint256 k) = _countAll(recs);
    bytes32 head = _heads[headRef];
    if (head == 0 || head == _FREE) revert StaleRecords(settlementId);
    if (!_applyChecked(settlementId, headRef, termsHash, uint8(decision), head, p, k)) revert StaleRecords(settlementId);
  }

  /// @dev Reads packed record at `p`; `itemTerms` stands in for an omitted termsHash.
  function _read(uint256 p, bytes32 itemTerms) private pure returns (uint256 w0, uint256 w1, uint256 w2, bytes32 w3, uint256 next) {
    assembly {
      w0 := calldataload(p)
      w1 := shr(16, calldataload(add(p, 32)))
      w2 := shr(96, calldataload(add(p, 62)))
      let f := byte(0, calldataload(add(p, 82)))
      switch f
      case 1 {
        w3 := itemTerms
        next := add(p, 83)
      }
      case 0 {
        w3 := calldataload(add(p, 83))
        next := add(p, 115)
      }
      default { revert(0, 0) }
    }
  }

  /// @dev End of `k` packed records starting at `p` (reverts past `end`).
  function _skip(uint256 p, uint256 end, uint256 k) private pure returns (uint256) {
    for (uint256 j; j < k; ) {
      uint256 f;
      assembly { f := byte(0, calldataload(add(p, 82))) }
      p += f == 1 ? 83 : 115;
      unchecked { ++j; }
    }
    if (p > end) revert MalformedRecords();
    return p;
  }

  /// @dev Offset and count of the packed records filling `recs`.
  function _countAll(bytes calldata recs) private pure returns (uint256 p0, uint256 k) {
    uint256 p;
    uint256 end;
    assembly {
      p := recs.offset
      end := add(p, recs.length)
    }
    p0 = p;
    while (p < end) {
      uint256 f;
      assembly { f := byte(0, calldataload(add(p, 82))) }
      p += f == 1 ? 83 : 115;
      unchecked { ++k; }
    }
    if (p != end) revert MalformedRecords();
  }

  function _link(bytes32 h, uint256 w0, uint256 w1, uint256 w2, bytes32 w3) private pure returns (bytes32 r) {
    assembly ("memory-safe") {
      let m := mload(0x40)
      mstore(m, h)
      mstore(add(m, 0x20), w0)
      mstore(add(m, 0x40), w1)
      mstore(add(m, 0x60), w2)
      mstore(add(m, 0x80), w3)
      r := keccak256(m, 0xa0)
    }
  }

  /// @dev Checks the k records at `p` against `head`; if they match, executes every Locked record
  /// under `termsHash` (new head written before any token call: the chain over the records left
  /// open, refused payouts appended as owed) and returns true. If not, records the decision pending.
  function _applyChecked(bytes32 settlementId, bytes32 headRef, bytes32 termsHash, uint8 decision, bytes32 head, uint256 p, uint256 k) private returns (bool) {
    (bytes32 hAll, bytes32 hKeep, uint256 nPay, bool mismatch) = _scan(settlementId, termsHash, p, k);
    if (hAll != head) {
      _recordPending(settlementId, termsHash, decision);
      return false;
    }
    if (nPay != 0) {
      _heads[headRef] = hKeep == settlementId ? _FREE : hKeep; // FREE when nothing stays open
      (bytes32 h, bool anyOwed) = _payAll(settlementId, termsHash, decision == _SETTLE, hKeep, p, k);
      if (anyOwed) _heads[headRef] = h;
    }
    if (mismatch) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_TERMS_MISMATCH);
    else if (nPay == 0) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_FINAL);
    return true;
  }

  function _payAll(bytes32 settlementId, bytes32 termsHash, bool settle, bytes32 hKeep, uint256 p, uint256 k) private returns (bytes32, bool anyOwed) {
    for (uint256 j; j < k; ) {
      bool owed;
      (p, hKeep, owed) = _payOne(settlementId, termsHash, settle, hKeep, p);
      anyOwed = anyOwed || owed;
      unchecked { ++j; }
    }
    return (hKeep, anyOwed);
  }

  /// @dev Pass 1: the chain over all k records, the chain over those that stay open if every payout
  /// succeeds, how many are paid, and whether a Locked record names other terms.
  function _scan(bytes32 settlementId, bytes32 termsHash, uint256 p, uint256 k) private pure returns (bytes32 hAll, bytes32 hKeep, uint256 nPay, bool mismatch) {
    hAll = settlementId;
    hKeep = settlementId;
    for (uint256 j; j < k; ) {
      (uint256 w0, uint256 w1, uint256 w2, bytes32 w3, uint256 next) = _read(p, termsHash);
      hAll = _link(hAll, w0, w1, w2, w3);
      bool locked = (w1 >> 232) == uint256(LockState.Locked);
      if (locked && w3 == termsHash) {
        ++nPay;
      } else {
        if (locked) mismatch = true;
        hKeep = _link(hKeep, w0, w1, w2, w3);
      }
      p = next;
      unchecked { ++j; }
    }
  }

  /// @dev Pass 2 for one record: pays it if it is Locked under `termsHash`; a refused payout extends
  /// `hKeep` with the record, now owed.
  function _payOne(bytes32 settlementId, bytes32 termsHash, bool settle, bytes32 hKeep, uint256 p) private returns (uint256 next, bytes32, bool owed) {
    uint256 w0;
    uint256 w1;
    uint256 w2;
    bytes32 w3;
    (w0, w1, w2, w3, next) = _read(p, termsHash);
    if ((w1 >> 232) != uint256(LockState.Locked) || w3 != termsHash) return (next, hKeep, false);
    address to = settle ? address(uint160(w2)) : address(uint160(w1));
    if (_tryTransfer(address(uint160(w0)), to, w0 >> 160)) {
      if (settle) emit Settled(settlementId, uint8(w1 >> 224));
      else emit Aborted(settlementId, uint8(w1 >> 224));
      return (next, hKeep, false);
    }
    uint256 owedState = settle ? uint256(LockState.SettleOwed) : uint256(LockState.AbortOwed);
    hKeep = _link(hKeep, w0, (w1 & ~(uint256(0xff) << 232)) | (owedState << 232), w2, w3);
    emit Owed(settlementId, uint8(w1 >> 224), to, w0 >> 160);
    return (next, hKeep, true);
  }

  function _tryTransfer(address token, address to, uint256 amount) private returns (bool ok) {
    uint256 left = gasleft();
    if (left < _PAYOUT_GAS_NEEDED) revert InsufficientGas(left, _PAYOUT_GAS_NEEDED);
    assembly ("memory-safe") {
      let m := mload(0x40)
      mstore(m, shl(224, 0xa9059cbb)) // transfer(address,uint256)
      mstore(add(m, 0x04), and(to, sub(shl(160, 1), 1)))
      mstore(add(m, 0x24), amount)
      ok := call(_PAYOUT_GAS, token, 0, m, 0x44, 0x00, 0x20)
      ok := and(ok, or(and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)), and(iszero(returndatasize()), gt(extcodesize(token), 0))))
    }
  }

  /// @dev Finds record `index` among the packed `recs`, checks the whole list against the head, and
  /// returns where the record starts with the head over the list without it.
  function _take(bytes32 settlementId, bytes32 headRef, bytes calldata recs, uint256 index) private view returns (uint256 at, bytes32 hWithout) {
    (uint256 p, uint256 k) = _countAll(recs);
    if (index >= k) revert MalformedRecords();
    bytes32 hAll = settlementId;
    hWithout = settlementId;
    for (uint256 j; j < k; ) {
      (uint256 a0, uint256 a1, uint256 a2, bytes32 a3, uint256 next) = _read(p, 0);
      hAll = _link(hAll, a0, a1, a2, a3);
      if (j == index) at = p;
      else hWithout = _link(hWithout, a0, a1, a2, a3);
      p = next;
      unchecked { ++j; }
    }
    if (hAll != _heads[headRef]) revert StaleRecords(settlementId);
    if (hWithout == settlementId) hWithout = _FREE;
  }

  // ------------------------------------------------------------------------------------------------
  // claim / reclaim
  // ------------------------------------------------------------------------------------------------

  /// @notice Pay owed record `index` of the settlement's open records `recs` (packed, f = 0).
  function claim(bytes32 settlementId, bytes32 headRef, bytes calldata recs, uint256 index) external guarded {
    (uint256 at, bytes32 hWithout) = _take(settlementId, headRef, recs, index);
    (uint256 w0, uint256 w1, uint256 w2, , ) = _read(at, 0);
    LockState state = LockState(w1 >> 232);
    address to;
    if (state == LockState.SettleOwed) to = address(uint160(w2));
    else if (state == LockState.AbortOwed) to = address(uint160(w1));
    else revert NothingOwed(state);
    _heads[headRef] = hWithout;
    emit Claimed(settlementId, uint8(w1 >> 224), to, w0 >> 160);
    IERC20(address(uint160(w0))).safeTransfer(to, w0 >> 160);
  }

  /// @notice The locker takes back Locked record `index` after deadline + grace, unless a decision
  /// for its terms is pending (then `execute` must run instead).
  function reclaim(bytes32 settlementId, bytes32 headRef, bytes calldata recs, uint256 index) external guarded {
    (uint256 at, bytes32 hWithout) = _take(settlementId, headRef, recs, index);
    (uint256 w0, uint256 w1, , bytes32 w3, ) = _read(at, 0);
    LockState state = LockState(w1 >> 232);
    if (state != LockState.Locked) revert NotReclaimable(state);
    address locker = address(uint160(w1));
    if (msg.sender != locker) revert NotLocker(msg.sender);
    uint256 availableAt = uint256(uint64(w1 >> 160)) + grace + 1;
    if (block.timestamp < availableAt) revert ReclaimTooEarly(availableAt);
    if (_pending[keccak256(abi.encode(settlementId, w3))] != 0) revert DecisionIsPending(settlementId, w3);
    _heads[headRef] = hWithout;
    emit Reclaimed(settlementId, uint8(w1 >> 224), locker, w0 >> 160);
    IERC20(address(uint160(w0))).safeTransfer(locker, w0 >> 160);
  }

  // ------------------------------------------------------------------------------------------------
  // views
  // ------------------------------------------------------------------------------------------------

  /// @notice A slot's value: 0 never used, 1 FREE (reusable), else an open head.
  function head(bytes32 headRef) external view returns (bytes32) {
    return _heads[headRef];
  }

  /// @notice The decision recorded pending for (settlementId, termsHash): 0 none, 1 SETTLE, 2 ABORT.
  function pendingDecision(bytes32 settlementId, bytes32 termsHash) external view returns (uint8) {
    return uint8(_pending[keccak256(abi.encode(settlementId, termsHash))]);
  }

  function supportsInterface(bytes4 interfaceId) external pure override returns (bool) {
    return interfaceId == type(IReceiver).interfaceId || interfaceId == type(IERC165).interfaceId;
  }
}
