// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title KYCRegistry
/// @notice The list of addresses allowed to hold the fund token (the transfer agent's KYC book),
/// with a sanctions/block flag that overrides an allowance. FundToken asks `isAllowed` for every
/// party of every transfer, mint and burn.
/// @dev Both flags of an account live in one byte of one slot, so `isAllowed` costs a single SLOAD
/// on the token's transfer path (it is called for every party of every transfer).
contract KYCRegistry is AccessControl {
  /// @notice Role that may allow, disallow, block and unblock accounts.
  bytes32 public constant KYC_ADMIN_ROLE = keccak256("KYC_ADMIN_ROLE");

  uint8 private constant _ALLOWED = 1;
  uint8 private constant _BLOCKED = 2;

  mapping(address account => uint8 flags) private _flags;

  /// @notice Emitted on every `setAllowed` / `setAllowedBatch` entry, even when the value is unchanged.
  event AllowedSet(address indexed account, bool allowed);
  /// @notice Emitted on every `setBlocked`, even when the value is unchanged.
  event BlockedSet(address indexed account, bool blocked);

  /// @param admin Receives DEFAULT_ADMIN_ROLE (grants roles) and KYC_ADMIN_ROLE.
  constructor(address admin) {
    _grantRole(DEFAULT_ADMIN_ROLE, admin);
    _grantRole(KYC_ADMIN_ROLE, admin);
  }

  /// @notice Allow (KYC) or disallow `account`.
  /// @dev Reverts AccessControlUnauthorizedAccount unless the caller has KYC_ADMIN_ROLE.
  function setAllowed(address account, bool allowed_) external onlyRole(KYC_ADMIN_ROLE) {
    _setAllowed(account, allowed_);
  }

  /// @notice `setAllowed` for many accounts in one transaction (onboarding a batch of investors).
  /// @dev Reverts AccessControlUnauthorizedAccount unless the caller has KYC_ADMIN_ROLE.
  function setAllowedBatch(address[] calldata accounts, bool allowed_) external onlyRole(KYC_ADMIN_ROLE) {
    uint256 n = accounts.length;
    for (uint256 i; i < n; ) {
      _setAllowed(accounts[i], allowed_);
      unchecked {
        ++i;
      }
    }
  }

  /// @notice Block (sanction) or unblock `account`. A blocked account is refused even if allowed.
  /// @dev Reverts AccessControlUnauthorizedAccount unless the caller has KYC_ADMIN_ROLE.
  function setBlocked(address account, bool blocked_) external onlyRole(KYC_ADMIN_ROLE) {
    uint8 flags = _flags[account];
    _flags[account] = blocked_ ? flags | _BLOCKED : flags & ~_BLOCKED;
    emit BlockedSet(account, blocked_);
  }

  /// @notice True iff `account` is allowed and not blocked: the only question the token asks.
  function isAllowed(address account) external view returns (bool) {
    return _flags[account] == _ALLOWED;
  }

  /// @notice The KYC flag alone (a blocked account may still be allowed).
  function allowed(address account) external view returns (bool) {
    return _flags[account] & _ALLOWED != 0;
  }

  /// @notice The sanctions flag alone.
  function blocked(address account) external view returns (bool) {
    return _flags[account] & _BLOCKED != 0;
  }

  function _setAllowed(address account, bool allowed_) private {
    uint8 flags = _flags[account];
    _flags[account] = allowed_ ? flags | _ALLOWED : flags & ~_ALLOWED;
    emit AllowedSet(account, allowed_);
  }
}
