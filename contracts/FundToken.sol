// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @notice The one question FundToken asks its registry.
interface IKYCRegistry {
  function isAllowed(address account) external view returns (bool);
}

/// @title FundToken
/// @notice A KYC-gated fund share token (OUSG-like): ERC-20 with 18 decimals and EIP-2612 permit,
/// pausable, where every party that sends or receives shares must be allowed by the KYCRegistry:
/// mint checks the recipient, burn the holder, transfer the sender and recipient, and transferFrom
/// also the caller (a spender moving someone's shares must itself be KYC'd — e.g. the DvP escrow).
/// Roles: MINTER_ROLE (mint, burn), PAUSER_ROLE (pause, unpause), AGENT_ROLE (transfer agent:
/// replaces the registry).
/// @dev Pausable is listed after AccessControl so that its `_paused` flag and `registry` share one
/// storage slot: the transfer path reads both with a single SLOAD.
contract FundToken is ERC20, ERC20Permit, AccessControl, Pausable {
  bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
  bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
  bytes32 public constant AGENT_ROLE = keccak256("AGENT_ROLE");

  /// @notice The registry consulted for every party of every transfer, mint and burn.
  IKYCRegistry public registry;

  /// @notice `account` is a party to a transfer, mint or burn but is not allowed by the registry.
  error NotAllowed(address account);

  /// @notice Emitted when the agent points the token at another registry.
  event RegistrySet(address indexed registry);

  /// @param admin Receives every role (DEFAULT_ADMIN, MINTER, PAUSER, AGENT).
  constructor(
    string memory name_,
    string memory symbol_,
    address registry_,
    address admin
  ) ERC20(name_, symbol_) ERC20Permit(name_) {
    registry = IKYCRegistry(registry_);
    _grantRole(DEFAULT_ADMIN_ROLE, admin);
    _grantRole(MINTER_ROLE, admin);
    _grantRole(PAUSER_ROLE, admin);
    _grantRole(AGENT_ROLE, admin);
    emit RegistrySet(registry_);
  }

  /// @notice Mint `amount` shares to `to`.
  /// @dev Rejections: AccessControlUnauthorizedAccount (caller lacks MINTER_ROLE), EnforcedPause,
  /// NotAllowed(to), ERC20InvalidReceiver (to is zero).
  function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
    _mint(to, amount);
  }

  /// @notice Burn `amount` shares held by `from` (redemption by the fund; no allowance needed).
  /// @dev Rejections: AccessControlUnauthorizedAccount (caller lacks MINTER_ROLE), EnforcedPause,
  /// NotAllowed(from), ERC20InsufficientBalance, ERC20InvalidSender (from is zero).
  function burn(address from, uint256 amount) external onlyRole(MINTER_ROLE) {
    _burn(from, amount);
  }

  /// @notice Stop every transfer, mint and burn. Rejections: AccessControlUnauthorizedAccount, EnforcedPause.
  function pause() external onlyRole(PAUSER_ROLE) {
    _pause();
  }

  /// @notice Resume transfers. Rejections: AccessControlUnauthorizedAccount, ExpectedPause.
  function unpause() external onlyRole(PAUSER_ROLE) {
    _unpause();
  }

  /// @notice Point the token at another KYC registry. Rejection: AccessControlUnauthorizedAccount.
  function setRegistry(address registry_) external onlyRole(AGENT_ROLE) {
    registry = IKYCRegistry(registry_);
    emit RegistrySet(registry_);
  }

  /// @notice Whether a transfer of `amount` from `from` to `to` would pass the token's compliance
  /// rules right now: not paused, both parties allowed by the registry, neither the zero address.
  /// @dev Balance and allowance are not checked (this is a compliance pre-check, as ERC-3643's
  /// `canTransfer`): the DvP escrow asks it about the payee before it holds the shares.
  function canTransfer(address from, address to, uint256 amount) external view returns (bool) {
    amount; // part of the interface; the compliance rules here do not depend on the amount
    if (paused() || from == address(0) || to == address(0)) return false;
    IKYCRegistry r = registry;
    return r.isAllowed(from) && r.isAllowed(to);
  }

  /// @notice ERC-20 transferFrom, additionally requiring the caller (spender) to be allowed.
  /// @dev Rejections: NotAllowed(caller | from | to), EnforcedPause, and OZ's ERC-20 errors.
  function transferFrom(address from, address to, uint256 value) public override returns (bool) {
    if (!registry.isAllowed(msg.sender)) revert NotAllowed(msg.sender);
    return super.transferFrom(from, to, value);
  }

  /// @notice Shares have 18 decimals (stated explicitly: the fund's unit must not depend on a base default).
  function decimals() public pure override returns (uint8) {
    return 18;
  }

  /// @dev The single choke point of every balance change: pause and KYC are enforced here so that
  /// transfer, transferFrom, mint and burn cannot diverge.
  function _update(address from, address to, uint256 value) internal override whenNotPaused {
    IKYCRegistry r = registry;
    if (from != address(0) && !r.isAllowed(from)) revert NotAllowed(from);
    if (to != address(0) && !r.isAllowed(to)) revert NotAllowed(to);
    super._update(from, to, value);
  }
}
