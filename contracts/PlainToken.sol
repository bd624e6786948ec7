// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title PlainToken
/// @notice A plain ERC-20 with EIP-2612 permit and no compliance rules (no `canTransfer`), for tests
/// and benchmarks: the escrow must work with tokens that have no pre-check, and plain transfers are
/// the baseline the benchmarks compare against.
/// @dev Anyone may mint: this token is a test fixture and must never carry value.
contract PlainToken is ERC20, ERC20Permit {
  constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) ERC20Permit(name_) {}

  /// @notice Mint `amount` to `to` — open to anyone (test fixture).
  function mint(address to, uint256 amount) external {
    _mint(to, amount);
  }
}
