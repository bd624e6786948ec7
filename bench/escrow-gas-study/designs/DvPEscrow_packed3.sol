// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IReceiver} from "@chainlink/contracts/src/v0.8/keystone/interfaces/IReceiver.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC165} from "@openzeppelin/contracts@5.0.2/utils/introspection/IERC165.sol";

/// @title DvPEscrow (design A, "packed3": three storage slots per lock)
/// @dev Same external behaviour as the 4-slot escrow except the leg-mask width. Per lock:
///   slot 0: payee(160) | amount(96)
///   slot 1: locker(160) | deadline(40) | state(8) | tokenIndex(32) | leg-0-only mask(16)
///   slot 2: termsHash (full 256 bits)
/// Tokens live in a per-escrow registry (uint32 index, registered by the first lock of a token:
/// that lock pays two extra fresh slots once). Leg mask: bits 240..254 of leg 0's slot 1 are legs
/// 0..14, bit 255 says some leg >= 15 has its bit in the settlement's `overflowMask` slot.
contract DvPEscrow is IReceiver {
  using SafeERC20 for IERC20;

  enum LockState { None, Locked, Settled, Aborted, Reclaimed, SettleOwed, AbortOwed }

  struct LockView {
    address token;
    uint96 amount;
    address locker;
    uint64 deadline;
    LockState state;
    address payee;
    bytes32 termsHash;
  }

  struct Lock {
    uint256 payeeAmount; // payee | amount << 160
    uint256 meta; // locker | deadline << 160 | state << 200 | tokenIndex << 208 | mask << 240
    bytes32 termsHash;
  }

  struct Settlement {
    uint256 overflowMask;
    Lock[256] legs;
  }

  uint8 private constant _SETTLE = 1;
  uint8 private constant _ABORT = 2;
  uint8 private constant _SKIP_UNKNOWN = 1;
  uint8 private constant _SKIP_FINAL = 2;
  uint8 private constant _SKIP_TERMS_MISMATCH = 3;
  uint8 private constant _SKIP_INVALID_DECISION = 4;

  uint256 private constant _ADDR = (uint256(1) << 160) - 1;
  uint256 private constant _DEADLINE_SHIFT = 160;
  uint256 private constant _STATE_SHIFT = 200;
  uint256 private constant _TOKEN_SHIFT = 208;
  uint256 private constant _MASK_SHIFT = 240;
  uint256 private constant _INLINE_LEGS = 15;
  uint256 private constant _OVERFLOW_FLAG = uint256(1) << 255;
  /// @dev meta with state and mask cleared (locker | deadline | tokenIndex kept)
  uint256 private constant _KEEP_META = ~((uint256(0xff) << _STATE_SHIFT) | (uint256(0xffff) << _MASK_SHIFT));
  uint256 private constant _MASK_BITS = uint256(0xffff) << _MASK_SHIFT;

  uint256 private constant _METADATA_LENGTH = 64;
  uint256 private constant _PAYOUT_GAS = 150_000;
  uint256 private constant _PAYOUT_GAS_NEEDED = (_PAYOUT_GAS * 64) / 63 + 5_000;

  address public immutable forwarder;
  address public immutable workflowOwner;
  bytes10 public immutable workflowName;
  bytes32 public immutable workflowId;
  uint64 public immutable grace;

  mapping(bytes32 settlementId => Settlement) private _settlements;
  /// @notice token => index + 1 (0: not registered)
  mapping(address token => uint256) private _tokenIndex;
  mapping(uint256 index => address) private _tokens;
  uint256 private _tokenCount;

  event Locked(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed token, address locker, address payee, uint256 amount, uint64 deadline, bytes32 termsHash);
  event Settled(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed payee, uint256 amount);
  event Aborted(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed locker, uint256 amount);
  event Owed(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed beneficiary, uint256 amount);
  event Claimed(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed beneficiary, uint256 amount);
  event Reclaimed(bytes32 indexed settlementId, uint8 indexed legIndex, address indexed locker, uint256 amount);
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
  error InsufficientGas(uint256 gasLeft, uint256 needed);

  constructor(address forwarder_, address workflowOwner_, bytes10 workflowName_, bytes32 workflowId_, uint64 grace_) {
    forwarder = forwarder_;
    workflowOwner = workflowOwner_;
    workflowName = workflowName_;
    workflowId = workflowId_;
    grace = grace_;
  }

  function lock(bytes32 settlementId, uint8 legIndex, address token, uint256 amount, address payee, uint64 deadline, bytes32 termsHash) external {
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash);
  }

  function lockWithPermit(bytes32 settlementId, uint8 legIndex, address token, uint256 amount, address payee, uint64 deadline, bytes32 termsHash, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s) external {
    try IERC20Permit(token).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {} catch {}
    _lock(settlementId, legIndex, token, amount, payee, deadline, termsHash);
  }

  function _lock(bytes32 settlementId, uint8 legIndex, address token, uint256 amount, address payee, uint64 deadline, bytes32 termsHash) private {
    if (amount == 0) revert ZeroAmount();
    if (amount > type(uint96).max) revert AmountTooLarge(amount);
    if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
    // deadline is stored in 40 bits (year 36812); a later deadline is clamped for storage only.
    uint256 dl = deadline > type(uint40).max ? type(uint40).max : deadline;
    Settlement storage st = _settlements[settlementId];
    Lock storage l = st.legs[legIndex];
    uint256 meta = l.meta;
    if ((meta >> _STATE_SHIFT) & 0xff != 0) revert LockExists(settlementId, legIndex);
    if (payee == address(0) || _refuses(token, payee, amount)) revert PayeeRefused(token, payee);
    uint256 tokenIndex = _tokenIndex[token];
    if (tokenIndex == 0) {
      tokenIndex = ++_tokenCount;
      require(tokenIndex <= type(uint32).max);
      _tokenIndex[token] = tokenIndex;
      _tokens[tokenIndex] = token;
    }
    uint256 newMeta = uint160(msg.sender) | (dl << _DEADLINE_SHIFT) | (uint256(1) << _STATE_SHIFT) | (tokenIndex << _TOKEN_SHIFT);
    if (legIndex == 0) {
      newMeta |= (meta & _MASK_BITS) | (uint256(1) << _MASK_SHIFT);
    } else {
      _markLocked(st, legIndex);
    }
    assembly ("memory-safe") {
      let s := l.slot
      sstore(s, or(and(payee, sub(shl(160, 1), 1)), shl(160, amount)))
      sstore(add(s, 1), newMeta)
      sstore(add(s, 2), termsHash)
    }
    emit Locked(settlementId, legIndex, token, msg.sender, payee, amount, deadline, termsHash);
    _pull(token, msg.sender, amount);
  }

  function _markLocked(Settlement storage st, uint8 legIndex) private {
    uint256 bit;
    if (legIndex < _INLINE_LEGS) {
      bit = uint256(1) << (_MASK_SHIFT + legIndex);
    } else {
      bit = _OVERFLOW_FLAG;
      st.overflowMask |= uint256(1) << legIndex;
    }
    Lock storage head = st.legs[0];
    head.meta |= bit;
  }

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

  function onReport(bytes calldata metadata, bytes calldata report) external {
    if (msg.sender != forwarder) revert UnauthorizedForwarder(msg.sender);
    if (metadata.length != _METADATA_LENGTH) revert MalformedMetadata();
    bytes32 id = bytes32(metadata[0:32]);
    if (id != workflowId) revert InvalidWorkflowId(id);
    address owner = address(bytes20(metadata[42:62]));
    if (owner != workflowOwner) revert InvalidWorkflowOwner(owner);
    bytes10 name = bytes10(metadata[32:42]);
    if (name != workflowName) revert InvalidWorkflowName(name);
    uint256 n;
    uint256 base;
    assembly ("memory-safe") {
      base := report.offset
      n := calldataload(add(base, 0x20))
      if or(lt(report.length, 0x40), or(iszero(eq(calldataload(base), 0x20)), gt(n, 0xffffffff))) { revert(0, 0) }
      if iszero(eq(report.length, add(0x40, mul(n, 0x60)))) { revert(0, 0) }
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
        if gt(decision, 0xff) { revert(0, 0) }
      }
      _applyItem(settlementId, termsHash, uint8(decision));
      unchecked { ++i; }
    }
  }

  function _applyItem(bytes32 settlementId, bytes32 termsHash, uint8 decision) private {
    if (decision != _SETTLE && decision != _ABORT) {
      emit ItemSkipped(settlementId, termsHash, decision, _SKIP_INVALID_DECISION);
      return;
    }
    Settlement storage st = _settlements[settlementId];
    uint256 mask = st.legs[0].meta >> _MASK_SHIFT; // bits 0..14 legs, bit 15 overflow flag
    if (mask == 0) {
      emit ItemSkipped(settlementId, termsHash, decision, _SKIP_UNKNOWN);
      return;
    }
    bool applied;
    bool mismatch;
    for (uint256 leg; mask != 0; ) {
      if (leg == _INLINE_LEGS) {
        mask = st.overflowMask >> _INLINE_LEGS; // the inline flag bit hands over to the overflow slot
      } else if (leg > _INLINE_LEGS && mask & 0xff == 0) {
        mask >>= 8;
        unchecked { leg += 8; }
        continue;
      }
      if (mask & 1 != 0) {
        Lock storage l = st.legs[leg];
        uint256 meta = l.meta;
        if ((meta >> _STATE_SHIFT) & 0xff == uint256(LockState.Locked)) {
          if (l.termsHash == termsHash) {
            _execute(settlementId, uint8(leg), l, meta, termsHash, decision == _SETTLE);
            applied = true;
          } else {
            mismatch = true;
          }
        }
      }
      mask >>= 1;
      unchecked { ++leg; }
    }
    if (mismatch) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_TERMS_MISMATCH);
    else if (!applied) emit ItemSkipped(settlementId, termsHash, decision, _SKIP_FINAL);
  }

  function _execute(bytes32 settlementId, uint8 leg, Lock storage l, uint256 meta, bytes32 termsHash, bool settle) private {
    uint256 pa = l.payeeAmount;
    address token = _tokens[(meta >> _TOKEN_SHIFT) & 0xffffffff];
    uint256 amount = pa >> 160;
    address to = settle ? address(uint160(pa)) : address(uint160(meta));
    uint256 finalState = settle ? uint256(LockState.Settled) : uint256(LockState.Aborted);
    // Final: keep meta (locker, deadline, token index, mask) with the new state; free payee|amount
    // and termsHash for the refund.
    uint256 finalMeta = (meta & ~(uint256(0xff) << _STATE_SHIFT)) | (finalState << _STATE_SHIFT);
    assembly ("memory-safe") {
      let s := l.slot
      sstore(add(s, 1), finalMeta)
      sstore(s, 0)
      sstore(add(s, 2), 0)
    }
    if (_tryTransfer(token, to, amount)) {
      if (settle) emit Settled(settlementId, leg, to, amount);
      else emit Aborted(settlementId, leg, to, amount);
    } else {
      uint256 owed = settle ? uint256(LockState.SettleOwed) : uint256(LockState.AbortOwed);
      assembly ("memory-safe") {
        let s := l.slot
        sstore(s, pa)
        sstore(add(s, 1), or(and(meta, not(shl(_STATE_SHIFT, 0xff))), shl(_STATE_SHIFT, owed)))
        sstore(add(s, 2), termsHash)
      }
      emit Owed(settlementId, leg, to, amount);
    }
  }

  function _tryTransfer(address token, address to, uint256 amount) private returns (bool ok) {
    uint256 left = gasleft();
    if (left < _PAYOUT_GAS_NEEDED) revert InsufficientGas(left, _PAYOUT_GAS_NEEDED);
    bytes memory data = abi.encodeCall(IERC20.transfer, (to, amount));
    assembly ("memory-safe") {
      ok := call(_PAYOUT_GAS, token, 0, add(data, 0x20), mload(data), 0x00, 0x20)
      ok := and(ok, or(and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)), and(iszero(returndatasize()), gt(extcodesize(token), 0))))
    }
  }

  function _stateOf(uint256 meta) private pure returns (LockState) {
    return LockState((meta >> _STATE_SHIFT) & 0xff);
  }

  function _finalize(Lock storage l, uint256 meta, LockState finalState) private {
    l.meta = (meta & ~(uint256(0xff) << _STATE_SHIFT)) | (uint256(finalState) << _STATE_SHIFT);
    l.payeeAmount = 0;
    l.termsHash = 0;
  }

  function claim(bytes32 settlementId, uint8 legIndex) external {
    Lock storage l = _settlements[settlementId].legs[legIndex];
    uint256 meta = l.meta;
    uint256 pa = l.payeeAmount;
    LockState state = _stateOf(meta);
    address to;
    LockState finalState;
    if (state == LockState.SettleOwed) {
      to = address(uint160(pa));
      finalState = LockState.Settled;
    } else if (state == LockState.AbortOwed) {
      to = address(uint160(meta));
      finalState = LockState.Aborted;
    } else {
      revert NothingOwed(state);
    }
    address token = _tokens[(meta >> _TOKEN_SHIFT) & 0xffffffff];
    uint256 amount = pa >> 160;
    _finalize(l, meta, finalState);
    emit Claimed(settlementId, legIndex, to, amount);
    IERC20(token).safeTransfer(to, amount);
  }

  function reclaim(bytes32 settlementId, uint8 legIndex) external {
    Lock storage l = _settlements[settlementId].legs[legIndex];
    uint256 meta = l.meta;
    LockState state = _stateOf(meta);
    if (state != LockState.Locked) revert NotReclaimable(state);
    address locker = address(uint160(meta));
    if (msg.sender != locker) revert NotLocker(msg.sender);
    uint256 availableAt = ((meta >> _DEADLINE_SHIFT) & 0xffffffffff) + grace + 1;
    if (block.timestamp < availableAt) revert ReclaimTooEarly(availableAt);
    uint256 pa = l.payeeAmount;
    address token = _tokens[(meta >> _TOKEN_SHIFT) & 0xffffffff];
    _finalize(l, meta, LockState.Reclaimed);
    emit Reclaimed(settlementId, legIndex, locker, pa >> 160);
    IERC20(token).safeTransfer(locker, pa >> 160);
  }

  /// @notice After a final state only state, locker, deadline and token survive; payee, amount and
  /// termsHash read as zero (the events carry the history).
  function getLock(bytes32 settlementId, uint8 legIndex) external view returns (LockView memory) {
    Lock storage l = _settlements[settlementId].legs[legIndex];
    uint256 meta = l.meta;
    uint256 pa = l.payeeAmount;
    if ((meta >> _STATE_SHIFT) & 0xff == 0) return LockView(address(0), 0, address(0), 0, LockState.None, address(0), 0);
    return LockView(
      _tokens[(meta >> _TOKEN_SHIFT) & 0xffffffff], uint96(pa >> 160), address(uint160(meta)),
      uint64((meta >> _DEADLINE_SHIFT) & 0xffffffffff), _stateOf(meta), address(uint160(pa)), l.termsHash
    );
  }

  function supportsInterface(bytes4 interfaceId) external pure override returns (bool) {
    return interfaceId == type(IReceiver).interfaceId || interfaceId == type(IERC165).interfaceId;
  }
}
