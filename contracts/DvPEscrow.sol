// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IReceiver} from "@chainlink/contracts/src/v0.8/keystone/interfaces/IReceiver.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
// The same IERC165 unit IReceiver extends (Chainlink imports it by its versioned name).
import {IERC165} from "@openzeppelin/contracts@5.0.2/utils/introspection/IERC165.sol";

/// @title DvPEscrow
/// @notice The chain side of crossdvp's lock / decide / execute protocol. A payer locks a leg here
/// (`lock`, tokens move into escrow); the oracle network's signed report, delivered through the
/// genuine Chainlink KeystoneForwarder, settles (pays each lock of the settlement to its payee) or
/// aborts (refunds each lock to its locker). If the token refuses a payout (the payee lost KYC), the
/// lock is recorded as owed and `claim` pays it once the token allows it: the decision is executed
/// atomically even when the transfer has to wait. After `deadline + grace` a locker may `reclaim` a
/// lock that no report executed.
///
/// Time: a lock is accepted while `block.timestamp <= deadline` (the chain's own clock decides, and a
/// lock stamped exactly at the deadline counts, as in the settlement core's decision rule).
///
/// Terms: a report item acts only on the locks of its settlement that name its terms hash, for SETTLE
/// and ABORT alike. A lock naming other terms is left Locked (ItemSkipped reason 3) and its locker
/// takes it back with `reclaim` after `deadline + grace`: the escrow never pays out a lock under
/// terms its locker did not consent to.
///
/// Tokens: any ERC-20 that moves exactly the amount asked (no transfer fees or rebasing); tokens
/// that return nothing from transfer are accepted, as SafeERC20 does.
///
/// @dev Storage per lock is four slots (token|amount, locker|deadline|state, payee, termsHash). A
/// report item finds every lock of its settlement without a list, through a bitmask of its locked leg
/// indices. The bits for legs 0..94 live in the otherwise unused upper 96 bits of leg 0's payee slot
/// (bit 160 + k: leg k was locked; bit 255: some leg >= 95 was locked), so the common settlement,
/// one chain lock at leg 0, pays for no slot beyond its lock's four. Legs 95..255 have their bits in
/// a separate per-settlement overflow slot, written and read only when bit 255 says so. Every read of
/// a payee masks the slot to 160 bits; a lock at leg k != 0 before leg 0 writes leg 0's payee slot
/// with mask bits only (its state stays None, its payee reads as zero). A lock reaching a final state
/// keeps its state byte and payee slot (which also keeps the mask); the token|amount and termsHash
/// slots are cleared for the gas refund (the events carry the history).
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

  /// @notice A lock as `getLock` returns it. After a final state (Settled, Aborted, Reclaimed) only
  /// `state` and `payee` are kept; the other fields read as zero (the events carry the history).
  struct LockView {
    address token;
    uint96 amount;
    address locker;
    uint64 deadline;
    LockState state;
    address payee;
    bytes32 termsHash;
  }

  /// @dev Field order is the storage packing: slot 0 token|amount, slot 1 locker|deadline|state,
  /// slot 2 payee (low 160 bits; leg 0's upper 96 bits are the settlement's inline leg mask, see
  /// `_INLINE_LEGS`), slot 3 termsHash. The contract never touches `payee` as a Solidity field:
  /// slot 2 is written whole by `_lock`/`_markLocked` and read through `_payeeOf` (masked).
  struct Lock {
    address token;
    uint96 amount;
    address locker;
    uint64 deadline;
    LockState state;
    address payee;
    bytes32 termsHash;
  }

  struct Settlement {
    // Bit i set <=> legs[i] was ever locked, for i >= _INLINE_LEGS only (lower legs have their bit
    // in legs[0]'s payee slot); read only when that slot's _OVERFLOW_FLAG is set.
    uint256 overflowMask;
    Lock[256] legs;
  }

  uint8 private constant _SETTLE = 1;
  uint8 private constant _ABORT = 2;

  uint8 private constant _SKIP_UNKNOWN = 1;
  uint8 private constant _SKIP_FINAL = 2;
  uint8 private constant _SKIP_TERMS_MISMATCH = 3;
  uint8 private constant _SKIP_INVALID_DECISION = 4;

  /// @dev Legs 0.._INLINE_LEGS-1 have their "ever locked" bit at 160 + leg in legs[0]'s payee slot
  /// (bits 160..254); bit 255 (_OVERFLOW_FLAG) says some higher leg has its bit in `overflowMask`.
  uint256 private constant _INLINE_LEGS = 95;
  uint256 private constant _INLINE_SHIFT = 160;
  uint256 private constant _OVERFLOW_FLAG = uint256(1) << 255;

  /// @dev What KeystoneForwarder passes as metadata: rawReport[45:109] =
  /// workflow_cid(32) | workflow_name(10) | workflow_owner(20) | report_id(2).
  uint256 private constant _METADATA_LENGTH = 64;

  /// @dev Gas given to a token payout inside `onReport`. A token that needs more (or reverts) makes
  /// the lock owed rather than letting one item starve the whole batch; `claim` then retries with all
  /// the caller's gas. Before each payout the escrow checks that the cap is really available (with
  /// the 1/64 that a CALL keeps back), otherwise it reverts the report so that a transmitter's short
  /// gas limit is a retryable forwarder failure, never a silently owed payout.
  uint256 private constant _PAYOUT_GAS = 150_000;
  uint256 private constant _PAYOUT_GAS_NEEDED = (_PAYOUT_GAS * 64) / 63 + 5_000;

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

  mapping(bytes32 settlementId => Settlement) private _settlements;

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
  event Settled(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed payee, uint256 amount);
  event Aborted(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed locker, uint256 amount);
  /// @notice The token refused the payout; `beneficiary` may `claim` it once the token allows it.
  event Owed(
    bytes32 indexed settlementId, uint8 indexed legIndex, address indexed beneficiary, uint256 amount
  );
  event Claimed(
    bytes32 indexed settlementId, uint8 indexed legIndex, address indexed beneficiary, uint256 amount
  );
  event Reclaimed(
    bytes32 indexed settlementId, uint8 indexed legIndex, address indexed locker, uint256 amount
  );
  /// @notice A report item (or part of it) that did not apply. reason: 1 no lock for the settlement,
  /// 2 every lock already final, 3 a lock's terms hash differs from the item's (that lock is left
  /// untouched; emitted also when other locks of the item did apply), 4 decision code not SETTLE/ABORT.
  event ItemSkipped(bytes32 indexed settlementId, bytes32 termsHash, uint8 decision, uint8 reason);

  error ZeroAmount();
  error AmountTooLarge(uint256 amount);
  error DeadlinePassed(uint64 deadline, uint256 blockTimestamp);
  error LockExists(bytes32 settlementId, uint8 legIndex);
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
  /// @notice Not in the shared spec's list: `onReport` was given too little gas to pay out safely.
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

  // ------------------------------------------------------------------------------------------------
  // lock
  // ------------------------------------------------------------------------------------------------

  /// @notice Lock `amount` of `token` for leg `legIndex` of settlement `settlementId`: the caller's
  /// consent to pay `payee` if the oracle network decides SETTLE for `termsHash`. Pulls the tokens
  /// with transferFrom (approve first, or use `lockWithPermit`).
  /// @dev Rejections: ZeroAmount; AmountTooLarge (> uint96 max); DeadlinePassed (block.timestamp >
  /// deadline); LockExists (this (settlementId, legIndex) was locked before, whatever its state);
  /// PayeeRefused (payee is zero, or the token's `canTransfer(escrow, payee, amount)` says false —
  /// tokens without `canTransfer` are not asked); the token's own errors from transferFrom.
  function lock(
    bytes32 settlementId,
    uint8 legIndex,
    address token,
    uint256 amount,
    address payee,
    uint64 deadline,
    bytes32 termsHash
  ) external {
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash);
  }

  /// @notice `lock` preceded by an EIP-2612 permit for exactly `amount`, so no approve transaction
  /// is needed. A permit that fails (e.g. someone front-ran it with the same signature) is ignored:
  /// if the allowance is there the lock proceeds, otherwise transferFrom reverts.
  /// @dev Rejections: those of `lock`.
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
  ) external {
    try IERC20Permit(token).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {} catch {}
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash);
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
    Settlement storage st = _settlements[settlementId];
    Lock storage l = st.legs[legIndex];
    if (l.state != LockState.None) revert LockExists(settlementId, legIndex);
    if (payee == address(0) || _refuses(token, payee, amount)) revert PayeeRefused(token, payee);

    // Effects before the pull: a token re-entering `lock` finds the lock taken.
    uint256 payeeWord = uint160(payee);
    if (legIndex == 0) {
      // Leg 0's payee slot is also the inline mask: keep the bits of legs locked before it, add its
      // own, and write the slot once. Its payee bits are zero here (state None: never locked).
      payeeWord |= _slotAt(l, 2) | (uint256(1) << _INLINE_SHIFT);
    } else {
      _markLocked(st, legIndex);
    }
    _store(l, token, amount, msg.sender, deadline, LockState.Locked, payeeWord, termsHash);
    emit Locked(settlementId, legIndex, token, msg.sender, payee, amount, deadline, termsHash);
    _pull(token, msg.sender, amount);
  }

  /// @dev Records leg `legIndex` (not 0: leg 0 sets its bit with its own payee write) in the
  /// settlement's leg mask: its inline bit in legs[0]'s payee slot (payee bits untouched), or for a
  /// high leg the overflow flag there and its bit in `overflowMask`.
  function _markLocked(Settlement storage st, uint8 legIndex) private {
    uint256 bit;
    if (legIndex < _INLINE_LEGS) {
      bit = uint256(1) << (_INLINE_SHIFT + legIndex);
    } else {
      bit = _OVERFLOW_FLAG;
      st.overflowMask |= uint256(1) << legIndex;
    }
    Lock storage head = st.legs[0];
    assembly ("memory-safe") {
      let s := add(head.slot, 2)
      sstore(s, or(sload(s), bit))
    }
  }

  /// @dev transferFrom(from, escrow, amount) that bubbles the token's own revert (so a caller sees
  /// e.g. ERC20InsufficientAllowance or NotAllowed) and accepts tokens that return nothing, as
  /// SafeERC20 does, without copying return data to memory.
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

  /// @dev True only when the token answers `canTransfer(escrow, payee, amount)` with false. A token
  /// without that function (the call reverts or returns nothing) is not asked: its transfer at
  /// settlement time is the check, and a refusal there makes the lock owed, not lost.
  function _refuses(address token, address payee, uint256 amount) private view returns (bool refused) {
    bytes memory data =
      abi.encodeWithSignature("canTransfer(address,address,uint256)", address(this), payee, amount);
    assembly ("memory-safe") {
      // Only the first word of the answer is read, so a huge return cannot cost the caller.
      let ok := staticcall(gas(), token, add(data, 0x20), mload(data), 0x00, 0x20)
      refused := and(ok, and(gt(returndatasize(), 0x1f), iszero(mload(0x00))))
    }
  }

  // ------------------------------------------------------------------------------------------------
  // report execution
  // ------------------------------------------------------------------------------------------------

  /// @notice Execute a batch of decisions (IReceiver). `report` is
  /// abi.encode((bytes32 settlementId, bytes32 termsHash, uint8 decision)[]). SETTLE pays every
  /// Locked leg of the settlement whose terms hash equals the item's to its payee; ABORT refunds each
  /// to its locker. An item that does not apply emits ItemSkipped and never reverts the batch.
  /// @dev Rejections (the whole report; the forwarder records the delivery as failed):
  /// UnauthorizedForwarder (caller is not the forwarder); MalformedMetadata (not 64 bytes);
  /// InvalidWorkflowId / InvalidWorkflowOwner / InvalidWorkflowName (metadata names another
  /// workflow); InsufficientGas (too little gas left for a payout); a payload that is not the
  /// canonical encoding (empty revert, as abi.decode's).
  function onReport(bytes calldata metadata, bytes calldata report) external {
    if (msg.sender != forwarder) revert UnauthorizedForwarder(msg.sender);
    if (metadata.length != _METADATA_LENGTH) revert MalformedMetadata();
    bytes32 id = bytes32(metadata[0:32]);
    if (id != workflowId) revert InvalidWorkflowId(id);
    address owner = address(bytes20(metadata[42:62]));
    if (owner != workflowOwner) revert InvalidWorkflowOwner(owner);
    bytes10 name = bytes10(metadata[32:42]);
    if (name != workflowName) revert InvalidWorkflowName(name);

    // The payload is read in place from calldata rather than copied by abi.decode: it must be the
    // canonical abi.encode((bytes32,bytes32,uint8)[]) — head offset 0x20, length n, then exactly n
    // 96-byte items, each decision word a uint8 — or the report reverts (as abi.decode would).
    uint256 n;
    uint256 base;
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
    for (uint256 i; i < n; ) {
      bytes32 settlementId;
      bytes32 termsHash;
      uint256 decision;
      assembly ("memory-safe") {
        let item := add(add(base, 0x40), mul(i, 0x60))
        settlementId := calldataload(item)
        termsHash := calldataload(add(item, 0x20))
        decision := calldataload(add(item, 0x40))
        if gt(decision, 0xff) {
          revert(0, 0)
        }
      }
      _applyItem(settlementId, termsHash, uint8(decision));
      unchecked {
        ++i;
      }
    }
  }

  function _applyItem(bytes32 settlementId, bytes32 termsHash, uint8 decision) private {
    if (decision != _SETTLE && decision != _ABORT) {
      emit ItemSkipped(settlementId, termsHash, decision, _SKIP_INVALID_DECISION);
      return;
    }
    Settlement storage st = _settlements[settlementId];
    // Bits 0..94: legs 0..94; bit 95: the overflow flag (some leg >= 95 was locked). Leg 0's payee
    // slot, read here, is warm when leg 0 is paid out.
    uint256 mask = _slotAt(st.legs[0], 2) >> _INLINE_SHIFT;
    if (mask == 0) {
      emit ItemSkipped(settlementId, termsHash, decision, _SKIP_UNKNOWN);
      return;
    }
    bool applied;
    bool mismatch;
    // Walk the set bits of the mask (skipping empty bytes: a settlement's legs are few).
    for (uint256 leg; mask != 0; ) {
      if (mask & 0xff == 0) {
        mask >>= 8;
        unchecked {
          leg += 8;
        }
        continue;
      }
      // Reaching leg 95 on the inline mask means its only bit left is the overflow flag (a skip of
      // 8 can never step over it): the overflow mask takes over, its bit for leg 95 now the lowest.
      if (leg == _INLINE_LEGS) mask = st.overflowMask >> _INLINE_LEGS;
      if (mask & 1 != 0) {
        Lock storage l = st.legs[leg];
        uint256 meta = _slotAt(l, 1); // locker | deadline | state, read once
        if (meta >> 224 == uint256(LockState.Locked)) {
          if (bytes32(_slotAt(l, 3)) == termsHash) {
            _execute(settlementId, uint8(leg), l, meta, termsHash, decision == _SETTLE);
            applied = true;
          } else {
            mismatch = true;
          }
        }
      }
      mask >>= 1;
      unchecked {
        ++leg;
      }
    }
    if (mismatch) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_TERMS_MISMATCH);
    else if (!applied) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_FINAL);
  }

  /// @dev Pays a Locked leg out (payee on settle, locker on abort). The final state is written before
  /// the token call, so a re-entering token finds nothing left to take; if the token refuses, the
  /// lock is restored as owed.
  function _execute(
    bytes32 settlementId,
    uint8 leg,
    Lock storage l,
    uint256 meta,
    bytes32 termsHash,
    bool settle
  ) private {
    uint256 head = _slotAt(l, 0); // token | amount
    address token = address(uint160(head));
    uint256 amount = head >> 160;
    address to = settle ? _payeeOf(l) : address(uint160(meta));

    _finalize(l, settle ? LockState.Settled : LockState.Aborted);
    if (_tryTransfer(token, to, amount)) {
      if (settle) emit Settled(settlementId, leg, to, amount);
      else emit Aborted(settlementId, leg, to, amount);
    } else {
      // Restore what _finalize cleared, now as owed. Slot 2 (payee, and for leg 0 the settlement's
      // inline mask) was never cleared and is not written here.
      uint256 owed = uint256(settle ? LockState.SettleOwed : LockState.AbortOwed);
      assembly ("memory-safe") {
        let s := l.slot
        sstore(s, head)
        sstore(add(s, 1), or(and(meta, not(shl(224, 0xff))), shl(224, owed)))
        sstore(add(s, 3), termsHash)
      }
      emit Owed(settlementId, leg, to, amount);
    }
  }

  /// @dev The raw word at slot `offset` of a lock (0 token|amount, 1 locker|deadline|state, 2 payee
  /// with leg 0's mask bits above it, 3 termsHash): one SLOAD where Solidity would load a packed slot
  /// once per field.
  function _slotAt(Lock storage l, uint256 offset) private view returns (uint256 word) {
    assembly ("memory-safe") {
      word := sload(add(l.slot, offset))
    }
  }

  /// @dev A lock's payee: slot 2 masked to 160 bits (leg 0's upper bits are the settlement's mask).
  function _payeeOf(Lock storage l) private view returns (address) {
    return address(uint160(_slotAt(l, 2)));
  }

  /// @dev ERC-20 transfer that reports failure instead of reverting (reverts, returns false, or
  /// runs out of its gas cap), for the report path where one refusal must not revert the batch.
  function _tryTransfer(address token, address to, uint256 amount) private returns (bool ok) {
    uint256 left = gasleft();
    if (left < _PAYOUT_GAS_NEEDED) revert InsufficientGas(left, _PAYOUT_GAS_NEEDED);
    bytes memory data = abi.encodeCall(IERC20.transfer, (to, amount));
    assembly ("memory-safe") {
      ok := call(_PAYOUT_GAS, token, 0, add(data, 0x20), mload(data), 0x00, 0x20)
      // Success: the call returned `true`, or returned nothing from a contract (USDT-style tokens).
      ok := and(
        ok,
        or(
          and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)),
          and(iszero(returndatasize()), gt(extcodesize(token), 0))
        )
      )
    }
  }

  /// @dev Writes all four slots of a lock at once (one SSTORE per slot; Solidity's field-by-field
  /// struct assignment re-reads and re-writes the packed slots). `payeeWord` is slot 2 as a whole:
  /// the payee, and for leg 0 the mask bits the caller has already merged in.
  function _store(
    Lock storage l,
    address token,
    uint256 amount,
    address locker,
    uint64 deadline,
    LockState state,
    uint256 payeeWord,
    bytes32 termsHash
  ) private {
    assembly ("memory-safe") {
      let addrMask := sub(shl(160, 1), 1)
      let s := l.slot
      sstore(s, or(and(token, addrMask), shl(160, and(amount, sub(shl(96, 1), 1)))))
      let deadlineBits := shl(160, and(deadline, 0xffffffffffffffff))
      sstore(add(s, 1), or(and(locker, addrMask), or(deadlineBits, shl(224, state))))
      sstore(add(s, 2), payeeWord)
      sstore(add(s, 3), termsHash)
    }
  }

  /// @dev A final lock keeps its state byte (so it can never be locked or paid again) and frees
  /// what no one will read again, for the gas refund. Measured: clearing token|amount and termsHash
  /// (two slots already read) is the cheapest choice at batch 100, where the refund cap (1/5 of the
  /// gas used) binds; clearing the payee slot too costs more than it returns. The payee slot must
  /// stay anyway: leg 0's carries the settlement's leg mask, which later items still walk.
  function _finalize(Lock storage l, LockState finalState) private {
    assembly ("memory-safe") {
      let s := l.slot
      sstore(add(s, 1), shl(224, finalState))
      sstore(s, 0)
      sstore(add(s, 3), 0)
    }
  }

  // ------------------------------------------------------------------------------------------------
  // claim / reclaim
  // ------------------------------------------------------------------------------------------------

  /// @notice Pay an owed lock to its beneficiary (the payee if SettleOwed, the locker if AbortOwed).
  /// Anyone may call it; the tokens only ever go to the beneficiary.
  /// @dev Rejections: NothingOwed (state is not SettleOwed/AbortOwed); the token's own error while it
  /// still refuses the transfer (e.g. FundToken's NotAllowed) — the lock then stays owed.
  function claim(bytes32 settlementId, uint8 legIndex) external {
    Lock storage l = _settlements[settlementId].legs[legIndex];
    LockState state = l.state;
    address to;
    LockState finalState;
    if (state == LockState.SettleOwed) {
      to = _payeeOf(l);
      finalState = LockState.Settled;
    } else if (state == LockState.AbortOwed) {
      to = l.locker;
      finalState = LockState.Aborted;
    } else {
      revert NothingOwed(state);
    }
    address token = l.token;
    uint96 amount = l.amount;
    _finalize(l, finalState);
    emit Claimed(settlementId, legIndex, to, amount);
    IERC20(token).safeTransfer(to, amount);
  }

  /// @notice The locker takes back a lock that no report executed, once block.timestamp >
  /// deadline + grace (the escape hatch if the oracle network never delivers).
  /// @dev Rejections: NotReclaimable (state is not Locked); NotLocker (caller is not the locker);
  /// ReclaimTooEarly(availableAt) where availableAt = deadline + grace + 1 is the first timestamp at
  /// which reclaim succeeds; the token's own error if it refuses the refund (the lock stays Locked).
  function reclaim(bytes32 settlementId, uint8 legIndex) external {
    Lock storage l = _settlements[settlementId].legs[legIndex];
    LockState state = l.state;
    if (state != LockState.Locked) revert NotReclaimable(state);
    address locker = l.locker;
    if (msg.sender != locker) revert NotLocker(msg.sender);
    uint256 availableAt = uint256(l.deadline) + grace + 1;
    if (block.timestamp < availableAt) revert ReclaimTooEarly(availableAt);
    address token = l.token;
    uint96 amount = l.amount;
    _finalize(l, LockState.Reclaimed);
    emit Reclaimed(settlementId, legIndex, locker, amount);
    IERC20(token).safeTransfer(locker, amount);
  }

  // ------------------------------------------------------------------------------------------------
  // views
  // ------------------------------------------------------------------------------------------------

  /// @notice A lock's fields and state (state None: never locked).
  function getLock(bytes32 settlementId, uint8 legIndex) external view returns (LockView memory) {
    Lock storage l = _settlements[settlementId].legs[legIndex];
    return LockView(l.token, l.amount, l.locker, l.deadline, l.state, _payeeOf(l), l.termsHash);
  }

  /// @notice ERC-165: IReceiver (so the forwarder routes reports here) and IERC165.
  function supportsInterface(bytes4 interfaceId) external pure override returns (bool) {
    return interfaceId == type(IReceiver).interfaceId || interfaceId == type(IERC165).interfaceId;
  }
}
