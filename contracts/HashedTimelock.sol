// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title HashedTimelock
/// @notice The classic ERC-20 hashed-timelock contract (HTLC), written as the baseline that
/// `crossdvp bench` compares the escrow's gas against: the sender approves, then `newContract`
/// pulls the tokens in under a hashlock and a timelock; the receiver `withdraw`s with the preimage,
/// or the sender `refund`s after the timelock. It is the standard design (one storage record per
/// swap, keyed by a hash of its fields), not an optimized one: it stands for what a cross-chain
/// atomic swap costs without an oracle network.
/// @dev A benchmark fixture; crossdvp's settlement never uses it.
contract HashedTimelock {
  using SafeERC20 for IERC20;

  struct LockContract {
    address sender;
    address receiver;
    address token;
    uint256 amount;
    bytes32 hashlock;
    uint256 timelock;
    bool withdrawn;
    bool refunded;
    bytes32 preimage;
  }

  mapping(bytes32 => LockContract) public contracts;

  event HTLCNew(
    bytes32 indexed contractId,
    address indexed sender,
    address indexed receiver,
    address token,
    uint256 amount,
    bytes32 hashlock,
    uint256 timelock
  );
  event HTLCWithdraw(bytes32 indexed contractId);
  event HTLCRefund(bytes32 indexed contractId);

  error ZeroAmount();
  error TimelockInPast(uint256 timelock);
  error ContractExists(bytes32 contractId);
  error UnknownContract(bytes32 contractId);
  error WrongPreimage(bytes32 contractId);
  error NotReceiver(address caller);
  error NotSender(address caller);
  error AlreadyClosed(bytes32 contractId);
  error TimelockExpired(uint256 timelock);
  error TimelockNotExpired(uint256 timelock);

  /// @notice Lock `amount` of `token` (approved beforehand) for `receiver` until `timelock`.
  /// @return contractId keccak256 of the swap's fields: the same swap cannot be created twice.
  function newContract(address receiver, bytes32 hashlock, uint256 timelock, address token, uint256 amount)
    external
    returns (bytes32 contractId)
  {
    if (amount == 0) revert ZeroAmount();
    if (timelock <= block.timestamp) revert TimelockInPast(timelock);
    contractId = keccak256(abi.encodePacked(msg.sender, receiver, token, amount, hashlock, timelock));
    if (contracts[contractId].sender != address(0)) revert ContractExists(contractId);
    IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
    contracts[contractId] = LockContract(msg.sender, receiver, token, amount, hashlock, timelock, false, false, 0);
    emit HTLCNew(contractId, msg.sender, receiver, token, amount, hashlock, timelock);
  }

  /// @notice The receiver claims the tokens by revealing the preimage before the timelock.
  function withdraw(bytes32 contractId, bytes32 preimage) external returns (bool) {
    LockContract storage c = contracts[contractId];
    if (c.sender == address(0)) revert UnknownContract(contractId);
    if (c.hashlock != sha256(abi.encodePacked(preimage))) revert WrongPreimage(contractId);
    if (c.receiver != msg.sender) revert NotReceiver(msg.sender);
    if (c.withdrawn || c.refunded) revert AlreadyClosed(contractId);
    if (c.timelock <= block.timestamp) revert TimelockExpired(c.timelock);
    c.preimage = preimage;
    c.withdrawn = true;
    IERC20(c.token).safeTransfer(c.receiver, c.amount);
    emit HTLCWithdraw(contractId);
    return true;
  }

  /// @notice The sender takes the tokens back once the timelock has passed unclaimed.
  function refund(bytes32 contractId) external returns (bool) {
    LockContract storage c = contracts[contractId];
    if (c.sender == address(0)) revert UnknownContract(contractId);
    if (c.sender != msg.sender) revert NotSender(msg.sender);
    if (c.withdrawn || c.refunded) revert AlreadyClosed(contractId);
    if (c.timelock > block.timestamp) revert TimelockNotExpired(c.timelock);
    c.refunded = true;
    IERC20(c.token).safeTransfer(c.sender, c.amount);
    emit HTLCRefund(contractId);
    return true;
  }
}
