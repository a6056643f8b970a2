// Being written: this page comes in a later commit.
import { h } from "../dom.js";

export default {
  id: "lifecycle",
  title: "Lifecycle",
  scopes: ["lifecycle:read"],
  render() {
    return h("h1", {}, "Lifecycle");
  },
};
