// Being written: this page comes in a later commit.
import { h } from "../dom.js";

export default {
  id: "value",
  title: "Value",
  scopes: ["campaigns:read"],
  render() {
    return h("h1", {}, "Value");
  },
};
