//! tierstack for Node.js.
